variable "arch" {
  type        = string
  description = "Target architecture: amd64 or arm64."
  validation {
    condition     = contains(["amd64", "arm64"], var.arch)
    error_message = "The arch variable must be one of: amd64, arm64."
  }
}

variable "version" {
  type        = string
  description = "MaculaOS version stamped into the image, semver (1.2.3 or 1.2.3-rc.1)."
  validation {
    condition     = regex_replace(var.version, "^(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?$", "") == ""
    error_message = "The version variable must be semver MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 1.0.0."
  }
}

variable "base_image" {
  type        = string
  description = "Base disk the build VM boots (qcow2), made by `maculaos-build base-disk` or Debian's cloud image."
}

variable "base_kernel" {
  type        = string
  description = "Kernel QEMU boots the base disk with (-kernel); empty when the base image boots by itself."
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
  description = "Directory Packer writes the VM disks and build-info.json to (must not exist)."
  default     = "output/packer-amd64"
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
  description = "Build-only key whose public half is root's authorized key in the base disk."
}

variable "authorized_keys_file" {
  type        = string
  description = "File with SSH public keys for the macula user baked into the image; empty for none."
  default     = ""
}

variable "keyring_file" {
  type        = string
  description = "PEM keyring (CA certificates) the image verifies update bundles against."
}

variable "source_date_epoch" {
  type        = number
  description = "Timestamp for reproducible squashfs (SOURCE_DATE_EPOCH)."
  default     = 0
}

variable "git_commit" {
  type        = string
  description = "Git commit the image is built from (recorded in the manifest)."
  default     = "unknown"
}

variable "squashfs_compression" {
  type        = string
  description = "Slot squashfs compressor: gzip (fast to build) or xz (smaller). GRUB reads both."
  default     = "gzip"
  validation {
    condition     = contains(["gzip", "xz"], var.squashfs_compression)
    error_message = "The squashfs_compression variable must be one of: gzip, xz."
  }
}
