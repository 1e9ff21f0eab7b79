arch   = "amd64"
memory = 2048
