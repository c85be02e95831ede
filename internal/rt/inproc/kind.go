package inproc

// Kind is the kind of a drop-in lock.
type Kind uint8

// Kinds.
const (
	KindMutex Kind = iota + 1
	KindRWMutex
)

func (k Kind) String() string {
	switch k {
	case KindMutex:
		return "mutex"
	case KindRWMutex:
		return "rwmutex"
	}
	return "unknown"
}
