package etcdreg

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/lockwatch/lockwatch/procid"
)

// holderMagic begins a HolderRecord's value. 0xff begins no UTF-8 text, so
// no value of etcd's own lock or election (empty, or the candidate's text)
// is taken for one; the whole value must parse, with nothing left over.
const holderMagic = "\xffLW3"

// The flags byte of a HolderRecord's value.
const (
	flagHeld     = 1 << 0
	flagStalled  = 1 << 1
	flagStall    = 1 << 2 // policy stall
	flagRecover  = 1 << 3 // policy recover
	flagAcquired = 1 << 4 // Acquired follows
)

// flagsAt is the offset of the flags byte: a holder's shadow is its
// contender's value with flagHeld set there.
const flagsAt = len(holderMagic)

// maxHostLen bounds a host name in a record (a DNS name is at most 253).
const maxHostLen = 255

// appendHolder appends h's value, compact (a contender's key and shadow
// are written by every Lock and carried by its raft proposal): the magic,
// the flags, then the process (pid, start, host), the goroutine, the stack
// id, the lease, Since and Acquired (Unix nanoseconds), as varints.
func appendHolder(b []byte, h *HolderRecord) []byte {
	var f byte
	if h.Held {
		f |= flagHeld
	}
	if h.Stalled {
		f |= flagStalled
	}
	switch h.Policy {
	case Stall.String():
		f |= flagStall
	case Recover.String():
		f |= flagRecover
	}
	if !h.Acquired.IsZero() {
		f |= flagAcquired
	}
	b = append(b, holderMagic...)
	b = append(b, f)
	b = appendID(b, h.ID)
	b = binary.AppendVarint(b, h.Goroutine)
	b = binary.AppendUvarint(b, h.Stack)
	b = binary.AppendVarint(b, h.Lease)
	b = binary.AppendVarint(b, h.Since.UnixNano())
	if f&flagAcquired != 0 {
		b = binary.AppendVarint(b, h.Acquired.UnixNano())
	}
	return b
}

// encodeHolder is h's value.
func encodeHolder(h *HolderRecord) string {
	var buf [96]byte
	return string(appendHolder(buf[:0], h))
}

var errHolder = errors.New("not a holder record")

// decodeHolder reads a contender's or shadow's value: the compact form
// (appendHolder), or JSON, as runs of an earlier format wrote it.
func decodeHolder(v []byte, h *HolderRecord) error {
	*h = HolderRecord{}
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, h)
	}
	if len(v) <= flagsAt || string(v[:flagsAt]) != holderMagic {
		return errHolder
	}
	f := v[flagsAt]
	d := decoder{b: v[flagsAt+1:]}
	h.ID = d.id()
	h.Goroutine = d.varint()
	h.Stack = d.uvarint()
	h.Lease = d.varint()
	h.Since = time.Unix(0, d.varint())
	if f&flagAcquired != 0 {
		h.Acquired = time.Unix(0, d.varint())
	}
	if d.err != nil || len(d.b) != 0 || f&^(flagHeld|flagStalled|flagStall|flagRecover|flagAcquired) != 0 {
		return errHolder
	}
	h.Held, h.Stalled = f&flagHeld != 0, f&flagStalled != 0
	switch {
	case f&flagStall != 0:
		h.Policy = Stall.String()
	case f&flagRecover != 0:
		h.Policy = Recover.String()
	}
	return nil
}

// DecodeHolder reads the value of a contender key (or of its shadow): the
// record of an etcdreg contender, or false for a value that is not one
// (a contender of etcd's own lock, an election's candidate).
func DecodeHolder(v []byte) (*HolderRecord, bool) {
	var h HolderRecord
	if decodeHolder(v, &h) != nil || h.ID.PID == 0 {
		return nil, false
	}
	return &h, true
}

// appendID appends a process: pid, start time, host (its length, then its
// bytes, at most maxHostLen).
func appendID(b []byte, id procid.ID) []byte {
	b = binary.AppendUvarint(b, uint64(id.PID))
	b = binary.AppendUvarint(b, id.Start)
	host := id.Host
	if len(host) > maxHostLen {
		host = host[:maxHostLen]
	}
	b = binary.AppendUvarint(b, uint64(len(host)))
	return append(b, host...)
}

// id reads what appendID wrote.
func (d *decoder) id() procid.ID {
	pid := d.uvarint()
	start := d.uvarint()
	n := d.uvarint()
	if d.err != nil || n > maxHostLen || n > uint64(len(d.b)) || pid > 1<<31 {
		d.err, d.b = errHolder, nil
		return procid.ID{}
	}
	id := procid.ID{PID: int(pid), Start: start, Host: string(d.b[:n])}
	d.b = d.b[n:]
	return id
}

// decoder reads varints, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = errHolder, nil
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = errHolder, nil
		return 0
	}
	d.b = d.b[n:]
	return x
}

// A batch of events (P/event/PROC/bSLOT) in the compact form: the magic,
// then the events put off (releases) of one process. batchMagic is the
// form of format 3's first runs, read still: each event names its process.
// batchMagic4 names the process once, at the head, and writes each event
// against the one before it (appendEvent): about 20 bytes an event, where
// batchMagic's took 55 and JSON 300.
const (
	batchMagic  = "\xffLWB"
	batchMagic4 = "\xffLWC"
)

// eventKinds numbers the event kinds in the compact form.
var eventKinds = []EventKind{EventAcquire, EventRelease, EventWait, EventStuck, EventTimeout, EventExpired,
	EventRecovered, EventLeaseLost, EventLost}

// The flags of an event in the compact form.
const (
	evAcquired = 1 << 0 // an AcquireRecord follows
	evWaited   = 1 << 1 // with Waited
	evTime     = 1 << 2 // Time is set (else zero)
	evLock     = 1 << 3 // batchMagic4: the lock's name follows (else the event before's)
)

// maxLockName bounds a lock name read from a batch.
const maxLockName = 4096

// encodeBatch is the value of a batch of events of process id (their ID
// is id's): batchMagic4, the process (pid, start, host), then the events.
func encodeBatch(id procid.ID, evs []EventRecord) []byte {
	b := make([]byte, 0, 24*len(evs)+len(batchMagic4)+16+len(id.Host))
	b = append(b, batchMagic4...)
	b = appendID(b, id)
	var prev *EventRecord
	for i := range evs {
		b = appendEvent(b, &evs[i], prev)
		prev = &evs[i]
	}
	return b
}

// appendEvent appends ev, written after prev (nil for the first of a
// batch): its kind's number, its flags, then, as varints, its Seq (less
// prev's), its lock's name (only when it differs from prev's), goroutine,
// stack, time (less prev's time, if prev had one), token, revision (less
// the token) and, if it carries one, its acquire: time (less ev's time),
// goroutine (less ev's), revision (less the token), and when it began to
// wait (less the acquire's time). Differences are taken and added back
// modulo 2^64, so that every value reads back as written.
func appendEvent(b []byte, ev, prev *EventRecord) []byte {
	kind := slices.Index(eventKinds, ev.Kind) // -1, written as 0, for a kind not known: refused when read
	var f byte
	a := ev.Acquired
	if a != nil {
		f |= evAcquired
		if !a.Waited.IsZero() {
			f |= evWaited
		}
	}
	if !ev.Time.IsZero() {
		f |= evTime
	}
	var prevSeq uint64
	var prevTime int64
	if prev != nil {
		prevSeq, prevTime = prev.Seq, unixNano(prev.Time)
	}
	if prev == nil || prev.Lock != ev.Lock {
		f |= evLock
	}
	b = append(b, byte(kind+1), f)
	b = binary.AppendUvarint(b, ev.Seq-prevSeq)
	if f&evLock != 0 {
		b = binary.AppendUvarint(b, uint64(len(ev.Lock)))
		b = append(b, ev.Lock...)
	}
	b = binary.AppendVarint(b, ev.Goroutine)
	b = binary.AppendUvarint(b, ev.Stack)
	t := unixNano(ev.Time)
	if f&evTime != 0 {
		b = binary.AppendVarint(b, t-prevTime)
	}
	b = binary.AppendVarint(b, ev.Token)
	b = binary.AppendVarint(b, ev.Rev-ev.Token)
	if a != nil {
		at := a.Time.UnixNano()
		b = binary.AppendVarint(b, t-at)
		b = binary.AppendVarint(b, a.Goroutine-ev.Goroutine)
		b = binary.AppendVarint(b, a.Rev-ev.Token)
		if f&evWaited != 0 {
			b = binary.AppendVarint(b, at-a.Waited.UnixNano())
		}
	}
	return b
}

// unixNano is t in Unix nanoseconds; 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

var errBatch = errors.New("not a batch of events")

// decodeEvents reads an event record (P/event/PROC/SLOT, JSON) or a batch
// of them (P/event/PROC/bSLOT: the compact form, either of the two, or a
// JSON array, as runs of an earlier format wrote it).
func decodeEvents(v []byte) ([]EventRecord, error) {
	switch {
	case len(v) > 0 && v[0] == '[':
		var evs []EventRecord
		return evs, json.Unmarshal(v, &evs)
	case len(v) >= len(batchMagic4) && string(v[:len(batchMagic4)]) == batchMagic4:
		return decodeBatch4(v[len(batchMagic4):])
	case len(v) >= len(batchMagic) && string(v[:len(batchMagic)]) == batchMagic:
		return decodeBatch(v[len(batchMagic):])
	}
	evs := make([]EventRecord, 1)
	return evs, json.Unmarshal(v, &evs[0])
}

// decodeBatch reads the events of a batch of batchMagic, each with its
// process.
func decodeBatch(v []byte) ([]EventRecord, error) {
	var evs []EventRecord
	d := decoder{b: v}
	for len(d.b) > 0 {
		if len(d.b) < 2 {
			return nil, errBatch
		}
		kind, f := int(d.b[0])-1, d.b[1]
		d.b = d.b[2:]
		if kind < 0 || kind >= len(eventKinds) || f&^(evAcquired|evWaited|evTime) != 0 {
			return nil, errBatch
		}
		ev := EventRecord{Kind: eventKinds[kind]}
		ev.Seq = d.uvarint()
		n := d.uvarint()
		if d.err != nil || n > maxLockName || n > uint64(len(d.b)) {
			return nil, errBatch
		}
		ev.Lock, d.b = string(d.b[:n]), d.b[n:]
		ev.ID = d.id()
		ev.Goroutine = d.varint()
		ev.Stack = d.uvarint()
		if f&evTime != 0 {
			ev.Time = time.Unix(0, d.varint())
		}
		ev.Token = d.varint()
		ev.Rev = d.varint()
		if f&evAcquired != 0 {
			a := &AcquireRecord{Time: time.Unix(0, d.varint())}
			a.Goroutine = d.varint()
			a.Rev = d.varint()
			if f&evWaited != 0 {
				a.Waited = time.Unix(0, d.varint())
			}
			ev.Acquired = a
		} else if f&evWaited != 0 {
			return nil, errBatch
		}
		if d.err != nil {
			return nil, errBatch
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil, errBatch
	}
	return evs, nil
}

// decodeBatch4 reads the events of a batch of batchMagic4 (encodeBatch).
func decodeBatch4(v []byte) ([]EventRecord, error) {
	d := decoder{b: v}
	id := d.id()
	if d.err != nil {
		return nil, errBatch
	}
	var evs []EventRecord
	var prevSeq uint64
	var prevTime int64
	for len(d.b) > 0 {
		if len(d.b) < 2 {
			return nil, errBatch
		}
		kind, f := int(d.b[0])-1, d.b[1]
		d.b = d.b[2:]
		if kind < 0 || kind >= len(eventKinds) || f&^(evAcquired|evWaited|evTime|evLock) != 0 ||
			f&evWaited != 0 && f&evAcquired == 0 || f&evLock == 0 && len(evs) == 0 {
			return nil, errBatch
		}
		ev := EventRecord{Kind: eventKinds[kind], ID: id}
		ev.Seq = prevSeq + d.uvarint()
		if f&evLock != 0 {
			n := d.uvarint()
			if d.err != nil || n > maxLockName || n > uint64(len(d.b)) {
				return nil, errBatch
			}
			ev.Lock, d.b = string(d.b[:n]), d.b[n:]
		} else {
			ev.Lock = evs[len(evs)-1].Lock
		}
		ev.Goroutine = d.varint()
		ev.Stack = d.uvarint()
		var t int64
		if f&evTime != 0 {
			t = prevTime + d.varint()
			ev.Time = time.Unix(0, t)
		}
		ev.Token = d.varint()
		ev.Rev = ev.Token + d.varint()
		if f&evAcquired != 0 {
			at := t - d.varint()
			a := &AcquireRecord{Time: time.Unix(0, at)}
			a.Goroutine = ev.Goroutine + d.varint()
			a.Rev = ev.Token + d.varint()
			if f&evWaited != 0 {
				a.Waited = time.Unix(0, at-d.varint())
			}
			ev.Acquired = a
		}
		if d.err != nil {
			return nil, errBatch
		}
		evs = append(evs, ev)
		prevSeq, prevTime = ev.Seq, t
	}
	if len(evs) == 0 {
		return nil, errBatch
	}
	return evs, nil
}
