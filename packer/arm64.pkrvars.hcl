arch   = "arm64"
memory = 2048
