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
  direct_boot = var.base_kernel != ""
  boot_args = local.direct_boot ? [
    ["-kernel", var.base_kernel],
    ["-initrd", var.base_initrd],
    ["-append", "root=${var.base_root} rw console=${local.console[var.arch]} net.ifnames=0"],
    ] : [
    ["-bios", local.firmware[var.arch]],
  ]
  common_args = [
    ["-cpu", local.cpu[var.arch]],
    ["-smp", "${var.cpus}"],
    ["-serial", "file:${var.output_directory}.serial.log"],
  ]
}
