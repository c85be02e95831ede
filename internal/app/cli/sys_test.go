package cli

import "syscall"

func nobody() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
}

func syscallKill(pid int) { syscall.Kill(pid, syscall.SIGKILL) }
