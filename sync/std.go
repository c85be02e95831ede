package sync

import gosync "sync"

// The rest of the standard library's sync, under the same names, so that a
// program keeps compiling when its import path changes. The types are
// aliases: a *sync.WaitGroup of this package is one of the standard
// library's, and values pass between code that imports either.
type (
	// Cond is sync.Cond. Its Locker may be a Mutex or RWMutex of this
	// package.
	Cond = gosync.Cond
	// Locker is sync.Locker.
	Locker = gosync.Locker
	// Map is sync.Map.
	Map = gosync.Map
	// Once is sync.Once.
	Once = gosync.Once
	// Pool is sync.Pool.
	Pool = gosync.Pool
	// WaitGroup is sync.WaitGroup.
	WaitGroup = gosync.WaitGroup
)

// NewCond returns a new Cond with Locker l, as sync.NewCond.
func NewCond(l Locker) *Cond { return gosync.NewCond(l) }

// OnceFunc is sync.OnceFunc.
func OnceFunc(f func()) func() { return gosync.OnceFunc(f) }

// OnceValue is sync.OnceValue.
func OnceValue[T any](f func() T) func() T { return gosync.OnceValue(f) }

// OnceValues is sync.OnceValues.
func OnceValues[T1, T2 any](f func() (T1, T2)) func() (T1, T2) { return gosync.OnceValues(f) }
