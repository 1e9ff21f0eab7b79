# MaculaOS image build: boot a Debian trixie base disk under QEMU, run the Ansible image
# playbook in it, and let the image role write the finished A/B GPT disk to a second disk.
# Works with Debian's Packer 1.6.6 (built-in qemu builder and ansible provisioner).

source "qemu" "maculaos" {
  qemu_binary      = local.qemu_binary[var.arch]
  machine_type     = local.machine_type[var.arch]
  accelerator      = var.accelerator
  memory           = var.memory
  headless         = true
  qemuargs         = concat(local.common_args, local.boot_args)
  disk_image       = true
  iso_url          = var.base_image
  iso_checksum     = "none"
  use_backing_file = false # Packer 1.6.6 omits -F (backing format), which qemu >= 7 requires
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  # second disk (/dev/vdb): the image role writes the finished MaculaOS disk image here
  disk_additional_size = ["${var.image_size_mib}M"]
  skip_compaction      = true
  output_directory     = var.output_directory
  vm_name              = "build-vm"

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "10m"
  shutdown_command     = "systemctl poweroff"
  shutdown_timeout     = "5m"
}

build {
  sources = ["source.qemu.maculaos"]

  provisioner "ansible" {
    playbook_file = "${path.root}/../ansible/image.yml"
    user          = "root"
    use_proxy     = false
    # the build VM is a throwaway local guest with fresh host keys: no host key checking here
    # (the fleet's inventories check strictly; ansible.cfg does not switch it off)
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${path.root}/../ansible.cfg", "ANSIBLE_FORCE_COLOR=0",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null",
    ]
    extra_arguments = [
      "--extra-vars", "image_arch=${var.arch}",
      "--extra-vars", "image_version=${var.version}",
      "--extra-vars", "image_target_size_mib=${var.image_size_mib}",
      "--extra-vars", "image_source_date_epoch=${var.source_date_epoch}",
      "--extra-vars", "image_git_commit=${var.git_commit}",
      "--extra-vars", "image_fetch_dir=${abspath(var.output_directory)}",
      "--extra-vars", "image_authorized_keys_file=${var.authorized_keys_file}",
      "--extra-vars", "image_squashfs_compression=${var.squashfs_compression}",
      "--extra-vars", "image_keyring_file=${abspath(var.keyring_file)}",
    ]
  }
}
