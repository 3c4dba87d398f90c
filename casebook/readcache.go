// This file is the casebook's read cache: what a clue's lead in memory
// does not keep of it (immutable once published: the settlements,
// narrative and evidence a lead page shows), compressed, least recently
// used first out when the cache is over its size. (A lead and its events
// are memory's: see memory.go.)
package casebook

import (
	"bytes"
	"container/list"
	"encoding/binary"
	"errors"
	"sync"

	"github.com/klauspost/compress/s2"
)

// DefaultReadCacheBytes is the read cache's size when ReadCacheBytes is 0.
const DefaultReadCacheBytes = 256 << 20

// cacheKey names a cached value.
type cacheKey struct {
	kind byte // 'c' clue
	id   int64
}

type cacheEntry struct {
	key   cacheKey
	value any
	size  int64
}

// readCache is a byte-bounded LRU. A value read from the database while a
// writer changed it is not kept: put takes the generation seen before the
// read, and every forget starts a new one.
type readCache struct {
	mu         sync.Mutex
	max, size  int64
	order      *list.List // front: most recently used
	entries    map[cacheKey]*list.Element
	generation uint64
	hits, miss uint64
}

func (rc *readCache) get(k cacheKey) (any, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e, ok := rc.entries[k]
	if !ok {
		rc.miss++
		return nil, false
	}
	rc.hits++
	rc.order.MoveToFront(e)
	return e.Value.(*cacheEntry).value, true
}

// begin is the generation a read starts in.
func (rc *readCache) begin() uint64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.generation
}

func (rc *readCache) put(k cacheKey, v any, size int64, generation uint64, max int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.max = max
	if generation != rc.generation || rc.max <= 0 || size > rc.max/8 {
		return
	}
	if rc.entries == nil {
		rc.entries, rc.order = map[cacheKey]*list.Element{}, list.New()
	}
	if e, ok := rc.entries[k]; ok {
		rc.size -= e.Value.(*cacheEntry).size
		rc.order.Remove(e)
	}
	rc.entries[k] = rc.order.PushFront(&cacheEntry{k, v, size})
	rc.size += size
	for rc.size > rc.max {
		last := rc.order.Back()
		ce := last.Value.(*cacheEntry)
		rc.order.Remove(last)
		delete(rc.entries, ce.key)
		rc.size -= ce.size
	}
}

// forget drops a value and starts a new generation.
func (rc *readCache) forget(k cacheKey) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.generation++
	if e, ok := rc.entries[k]; ok {
		rc.size -= e.Value.(*cacheEntry).size
		rc.order.Remove(e)
		delete(rc.entries, k)
	}
}

func (rc *readCache) clear() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.generation++
	rc.entries, rc.order, rc.size = nil, nil, 0
}

// cachePut keeps a value read in generation, within ReadCacheBytes.
func (c *Casebook) cachePut(k cacheKey, v any, size int64, generation uint64) {
	max := c.ReadCacheBytes
	if max == 0 {
		max = DefaultReadCacheBytes
	}
	c.cache.put(k, v, size, generation, max)
}

// clueText is what the read cache keeps of a clue: its settlements,
// narrative and evidence (as encoding/json writes it), each after its
// length, compressed with S2 (Snappy's successor: no entropy coding, so
// it reads back at a few GB/s where zstd spent a tenth of the API's CPU).
type clueText []byte

func packText(settlementIDs, narrative string, evidence []byte) clueText {
	scratch := packScratch.Get().(*[2][]byte)
	defer packScratch.Put(scratch)
	b := scratch[0][:0]
	for _, part := range [][]byte{[]byte(settlementIDs), []byte(narrative), evidence} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	// S2 wants room for its worst case, several times what it writes:
	// encoded into the scratch, the text keeps only what it needs (the
	// cache counts its size by that).
	enc := scratch[1]
	if need := s2.MaxEncodedLen(len(b)); cap(enc) < need {
		enc = make([]byte, need)
	}
	text := clueText(bytes.Clone(s2.Encode(enc[:cap(enc)], b)))
	scratch[0], scratch[1] = b, enc
	return text
}

// packScratch holds packText's buffers between calls.
var packScratch = sync.Pool{New: func() any { return new([2][]byte) }}

var errBadText = errors.New("casebook: a cached clue does not read back")

func (t clueText) unpack() (settlementIDs, narrative string, evidence []byte, err error) {
	b, err := s2.Decode(nil, t)
	if err != nil {
		return "", "", nil, err
	}
	var parts [3][]byte
	for i := range parts {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", "", nil, errBadText
		}
		parts[i], b = b[k:k+int(n)], b[k+int(n):]
	}
	return string(parts[0]), string(parts[1]), parts[2], nil
}
