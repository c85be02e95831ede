package cli

func loadRole(dir string) int { return 0 }
