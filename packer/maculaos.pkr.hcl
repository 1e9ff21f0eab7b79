# MaculaOS image build: boot a Debian trixie base disk under QEMU, run the Ansible image
# playbook in it, and let the image role write the finished A/B GPT disk to a second disk.
# Works with Debian's Packer 1.6.6 (built-in qemu builder and ansible provisioner).
#
# One file, so that each way of typing it works (README, "Running Packer yourself"):
#   packer build packer/maculaos.pkr.hcl       (or: cd packer && packer build maculaos.pkr.hcl)
#   packer build packer/
#   packer build -var-file=packer/arm64.pkrvars.hcl packer/
# Every variable has a default: the base disk, build key and keyring the wrapper
# (scripts/build.sh) keeps in cache/ (or $MACULAOS_CACHE). When one is missing, Packer stops
# naming it and what to run first. The wrapper passes every variable itself.

variable "arch" {
  type        = string
  description = "Target architecture: amd64 or arm64."
  default     = "amd64"
  validation {
    condition     = contains(["amd64", "arm64"], var.arch)
    error_message = "The arch variable must be one of: amd64, arm64."
  }
}

variable "version" {
  type        = string
  description = "MaculaOS version stamped into the image, semver (1.2.3 or 1.2.3-rc.1)."
  default     = "0.1.0"
  validation {
    condition     = regex_replace(var.version, "^(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?$", "") == ""
    error_message = "The version variable must be semver MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 1.0.0."
  }
}

variable "cache" {
  type        = string
  description = "The build cache the wrapper fills (base disk, build key, development keys); empty: $MACULAOS_CACHE, else cache/ in the repository."
  default     = env("MACULAOS_CACHE")
}

variable "base_image" {
  type        = string
  description = "Base disk the build VM boots (qcow2); empty: the cache's base disk for arch (with its kernel and initrd). Debian's cloud image works too (leave base_kernel empty)."
  default     = ""
}

variable "base_kernel" {
  type        = string
  description = "Kernel QEMU boots base_image with (-kernel); empty when base_image boots by itself."
  default     = ""
}

variable "base_initrd" {
  type        = string
  description = "Initrd for base_kernel (-initrd)."
  default     = ""
}

variable "base_root" {
  type        = string
  description = "Root device named on the kernel command line when booting with base_kernel."
  default     = "/dev/vda"
}

variable "output_directory" {
  type        = string
  description = "Directory Packer writes the VM disks and build-info.json to (must not exist); empty: output/.packer-<arch> in the repository."
  default     = ""
}

variable "accelerator" {
  type        = string
  description = "QEMU accelerator: tcg (default; KVM crashes guests on our build machines) or kvm."
  default     = "tcg"
  validation {
    condition     = contains(["tcg", "kvm"], var.accelerator)
    error_message = "The accelerator variable must be one of: tcg, kvm."
  }
}

variable "memory" {
  type        = number
  description = "Memory of the build VM in MiB (at least 1024)."
  default     = 2048
  validation {
    condition     = var.memory >= 1024
    error_message = "The memory variable must be at least 1024 (MiB)."
  }
}

variable "cpus" {
  type        = number
  description = "vCPUs of the build VM."
  default     = 2
}

variable "image_size_mib" {
  type        = number
  description = "Size of the finished disk image in MiB (ESP + 2 slots + state)."
  default     = 2400
  validation {
    condition     = var.image_size_mib >= 512
    error_message = "The image_size_mib variable must be at least 512 (MiB)."
  }
}

variable "ssh_private_key_file" {
  type        = string
  description = "Build-only key whose public half is root's authorized key in the base disk; empty: the cache's build key."
  default     = ""
}

variable "authorized_keys_file" {
  type        = string
  description = "File with SSH public keys for the macula user baked into the image; empty: the cache's build key (as the wrapper does); none: no key."
  default     = ""
}

variable "keyring_file" {
  type        = string
  description = "PEM keyring (CA certificates) the image verifies update bundles against; empty: $MACULAOS_KEYRING (the release keyring, as for the wrapper), else the cache's development CA."
  default     = env("MACULAOS_KEYRING")
}

variable "source_date_epoch" {
  type        = number
  description = "Timestamp for reproducible squashfs (SOURCE_DATE_EPOCH)."
  default     = 0
}

variable "mitogen_strategy_plugins" {
  type        = string
  description = "Directory of Mitogen's Ansible strategy plugins (ansible_mitogen/plugins/strategy); when set, the image play runs with mitogen_linear: one Python per build VM instead of one per task. The wrapper sets it from the venv; empty runs Ansible's own linear strategy."
  default     = ""
}

variable "git_commit" {
  type        = string
  description = "Git commit the image is built from (recorded in the manifest)."
  default     = "unknown"
}

variable "squashfs_compression" {
  type        = string
  description = "Slot squashfs compressor: gzip (fast to build) or xz (smaller); none leaves it uncompressed for scripts/build.sh, which compresses it natively on the build host. GRUB reads all three."
  default     = "xz"
  validation {
    condition     = contains(["gzip", "xz", "none"], var.squashfs_compression)
    error_message = "The squashfs_compression variable must be one of: gzip, xz, none."
  }
}

locals {
  qemu_binary = {
    amd64 = "qemu-system-x86_64"
    arm64 = "qemu-system-aarch64"
  }
  machine_type = {
    amd64 = "q35"
    arm64 = "virt"
  }
  cpu = {
    # TCG: without ERMS/FSRM the kernel and glibc zero and copy memory 8 bytes per emulated
    # iteration, not 1 (rep stosb/movsb): a first boot 141-143 s -> 104 s (src/maculaos/arch.py)
    amd64 = "max,-erms,-fsrm"
    arm64 = "cortex-a72"
  }
  console = {
    amd64 = "ttyS0"
    arm64 = "ttyAMA0"
  }
  firmware = {
    amd64 = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    arm64 = "/usr/share/AAVMF/AAVMF_CODE.fd"
  }
  # Boot the base disk with -kernel/-initrd when given one (mmdebstrap base disk, no bootloader);
  # otherwise through the firmware (e.g. Debian's cloud image).
  direct_boot = local.base_kernel != ""
  boot_args = local.direct_boot ? [
    ["-kernel", local.base_kernel],
    ["-initrd", local.base_initrd],
    ["-append", "root=${var.base_root} rw console=${local.console[var.arch]} net.ifnames=0"],
    ] : [
    ["-bios", local.firmware[var.arch]],
  ]
  common_args = [
    ["-cpu", local.cpu[var.arch]],
    ["-smp", "${var.cpus}"],
    ["-serial", "file:${local.output_dir}.serial.log"],
  ]

  # What the wrapper (scripts/build.sh) fills; a hand-typed `packer build` uses the same files.
  # A relative MACULAOS_CACHE means the repository's directory, as for the wrapper (which
  # runs there), whatever directory Packer is started from.
  repo            = abspath("${path.root}/..")
  cache           = var.cache == "" ? "${local.repo}/cache" : (substr(var.cache, 0, 1) == "/" ? var.cache : "${local.repo}/${var.cache}")
  base_dir        = "${local.cache}/base/${var.arch}"
  cache_base      = var.base_image == ""
  base_image_path = local.cache_base ? "${local.base_dir}/base.qcow2" : var.base_image
  base_kernel     = var.base_kernel != "" ? var.base_kernel : (local.cache_base ? "${local.base_dir}/vmlinuz" : "")
  base_initrd     = var.base_initrd != "" ? var.base_initrd : (local.cache_base ? "${local.base_dir}/initrd.img" : "")
  ssh_key_path    = var.ssh_private_key_file != "" ? var.ssh_private_key_file : "${local.cache}/build-ssh/id_ed25519"
  keyring_path    = var.keyring_file != "" ? var.keyring_file : "${local.cache}/keys/dev-ca.cert.pem"
  authorized_keys = var.authorized_keys_file == "none" ? "" : (var.authorized_keys_file != "" ? abspath(var.authorized_keys_file) : "${local.ssh_key_path}.pub")
  # (not the wrapper's output/.packer-<arch>, which each wrapper run starts by deleting)
  output_dir = var.output_directory != "" ? var.output_directory : "${local.repo}/output/packer-${var.arch}"
  # the venv scripts/setup-host.sh makes has the pinned Ansible (Debian's is not installed)
  ansible_playbook = fileexists("${local.repo}/.venv/bin/ansible-playbook") ? "${local.repo}/.venv/bin/ansible-playbook" : "ansible-playbook"
  # (file() of a missing path is Packer 1.6's only way to stop with a message of ours)
  hint       = "run scripts/build.sh --arch ${var.arch} once to make it"
  base_image = fileexists(local.base_image_path) ? local.base_image_path : file("${local.base_image_path} (the base disk): ${local.hint}, or pass -var base_image=")
  ssh_key    = fileexists(local.ssh_key_path) ? local.ssh_key_path : file("${local.ssh_key_path} (the build key): ${local.hint}")
  keyring    = fileexists(local.keyring_path) ? local.keyring_path : file("${local.keyring_path} (the update keyring): ${local.hint}")
}

source "qemu" "maculaos" {
  qemu_binary      = local.qemu_binary[var.arch]
  machine_type     = local.machine_type[var.arch]
  accelerator      = var.accelerator
  memory           = var.memory
  headless         = true
  qemuargs         = concat(local.common_args, local.boot_args)
  disk_image       = true
  iso_url          = local.base_image
  iso_checksum     = "none"
  use_backing_file = false # Packer 1.6.6 omits -F (backing format), which qemu >= 7 requires
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  # second disk (/dev/vdb): the image role writes the finished MaculaOS disk image here
  disk_additional_size = ["${var.image_size_mib}M"]
  skip_compaction      = true
  output_directory     = local.output_dir
  vm_name              = "build-vm"

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = local.ssh_key
  ssh_timeout          = "10m"
  # Nothing of the build VM outlives it but /dev/vdb, which the image role fsyncs after writing
  # the image: a forced power-off (no unit stopping) saves ~25 s of an emulated shutdown.
  shutdown_command = "sync && systemctl poweroff --force --force"
  shutdown_timeout = "5m"
}

build {
  sources = ["source.qemu.maculaos"]

  provisioner "ansible" {
    playbook_file = "${path.root}/../ansible/image.yml"
    command       = local.ansible_playbook
    user          = "root"
    use_proxy     = false
    # the build VM is a throwaway local guest with fresh host keys: no host key checking here
    # (the fleet's inventories check strictly; ansible.cfg does not switch it off)
    ansible_env_vars = concat([
      "ANSIBLE_CONFIG=${path.root}/../ansible.cfg", "ANSIBLE_FORCE_COLOR=0",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null",
      ], var.mitogen_strategy_plugins == "" ? [] : [
      "ANSIBLE_STRATEGY_PLUGINS=${var.mitogen_strategy_plugins}", "ANSIBLE_STRATEGY=mitogen_linear",
    ])
    # one JSON value: key=value pairs would be cut at a space in a path
    extra_arguments = [
      "--extra-vars", jsonencode({
        image_arch                 = var.arch
        image_version              = var.version
        image_target_size_mib      = "${var.image_size_mib}"
        image_source_date_epoch    = "${var.source_date_epoch}"
        image_git_commit           = var.git_commit
        image_fetch_dir            = abspath(local.output_dir)
        image_authorized_keys_file = local.authorized_keys
        image_squashfs_compression = var.squashfs_compression
        image_keyring_file         = abspath(local.keyring)
      }),
    ]
  }
}
