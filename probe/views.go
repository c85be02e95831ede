package probe

import (
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"github.com/lockwatch/lockwatch/internal/rt/record"
)

// The agent's answers: probewire's views with this process's frames.
type (
	answer      = probewire.Answer[record.Frame]
	request     = probewire.Request
	lockView    = probewire.LockView[record.Frame]
	heldLock    = probewire.HeldLock[record.Frame]
	waitingLock = probewire.WaitingLock[record.Frame]
	mutexView   = probewire.MutexView[record.Frame]
	orderView   = probewire.OrderView[record.Frame]
	orderEdge   = probewire.OrderEdge[record.Frame]
)

// sameFrame is the conversion of a view of this process's own frames.
func sameFrame(f record.Frame) record.Frame { return f }
