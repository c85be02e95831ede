// Command droporder takes drop-in mutexes in three patterns, one goroutine
// after another, never overlapping, so it never deadlocks; lockwatch run
// reports the orders that can (docs/lock-order.md, "What identifies a
// mutex"). The patterns:
//
//   - list: 100 items, each with its own mutex, walked hand over hand in
//     index order (item i held while item i+1 is taken): a consistent
//     order, no deadlock possible;
//   - bank: accounts with a mutex each; transfer takes the payer's, then
//     the payee's; a transfer a -> b, later one b -> a: the two can
//     deadlock;
//   - cache: a session's mutex then its cache's in one handler, a cache's
//     then its session's in another, on different sessions and caches
//     here: they deadlock the day the two handlers meet on one pair.
//
// With -classes every mutex is given its kind's name (sync.SetName:
// "item", "account", "session", "cache"), so that lockwatch orders kinds
// rather than instances.
//
//	go build -trimpath -o /tmp/droporder ./examples/droporder
//	lockwatch run -- /tmp/droporder [-classes]
package main

import (
	"flag"
	"fmt"

	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync"
)

var classes = flag.Bool("classes", false, "name every mutex by its kind")

func named(m *sync.Mutex, class string) {
	if *classes {
		sync.SetName(m, class)
	}
}

// Item is an element of a list, with its own mutex.
type Item struct {
	mu  sync.Mutex
	val int
}

func newItem(v int) *Item {
	it := &Item{}
	named(&it.mu, "item")
	it.mu.Lock()
	it.val = v
	it.mu.Unlock()
	return it
}

// walk visits the list hand over hand: each item is locked before the
// previous one is released.
func walk(items []*Item) int {
	sum := 0
	items[0].mu.Lock()
	for i := 1; i < len(items); i++ {
		items[i].mu.Lock()
		sum += items[i-1].val
		items[i-1].mu.Unlock()
	}
	sum += items[len(items)-1].val
	items[len(items)-1].mu.Unlock()
	return sum
}

// Account is a bank account.
type Account struct {
	mu      sync.Mutex
	balance int
}

func open(balance int) *Account {
	a := &Account{}
	named(&a.mu, "account")
	a.mu.Lock()
	a.balance = balance
	a.mu.Unlock()
	return a
}

// transfer takes the payer's mutex, then the payee's.
func transfer(from, to *Account, n int) {
	from.mu.Lock()
	defer from.mu.Unlock()
	to.mu.Lock()
	defer to.mu.Unlock()
	from.balance -= n
	to.balance += n
}

// Session and Cache are a user's session and a shared cache.
type Session struct {
	mu   sync.Mutex
	hits int
}

type Cache struct {
	mu      sync.Mutex
	entries map[string]int
}

func newSession() *Session {
	s := &Session{}
	named(&s.mu, "session")
	return s
}

func newCache() *Cache {
	c := &Cache{entries: map[string]int{}}
	named(&c.mu, "cache")
	return c
}

// lookup holds the session, then takes the cache.
func lookup(s *Session, c *Cache, key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	s.hits++
	return c.entries[key]
}

// evict holds the cache, then takes the session it evicts for.
func evict(c *Cache, s *Session, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(c.entries, key)
	s.hits = 0
}

// alone runs f in a goroutine of its own and waits for it.
func alone(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func main() {
	flag.Parse()
	agent, err := probe.Start(probe.Options{Role: "droporder"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer agent.Close()

	items := make([]*Item, 100)
	for i := range items {
		items[i] = newItem(i)
	}
	alone(func() { fmt.Println("list: sum", walk(items)) })

	a, b := open(100), open(100)
	alone(func() { transfer(a, b, 10) })
	alone(func() { transfer(b, a, 5) })
	fmt.Println("bank: balances", a.balance, b.balance)

	s1, s2, c1, c2 := newSession(), newSession(), newCache(), newCache()
	alone(func() { lookup(s1, c1, "k") })
	alone(func() { evict(c2, s2, "k") })
	fmt.Println("cache: done")
}
