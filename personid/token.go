// This file makes the keyed tokens (假名) that stand for people in the
// modelers' sandbox: HMAC-SHA-256 of the normalized ID under a key kept
// outside the store, so that the same person has the same token in every
// feed (joins still work) and nobody without the key can go back from a
// token to an ID — ID numbers are too few and too regular for a plain hash.
package personid

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a pseudonym key in bytes.
const KeySize = 32

// TokenBytes are the bytes of the HMAC a token keeps: 72 bits, twelve
// base64 characters (short enough for DuckDB to keep inline, and with 25
// million people a collision has odds of about one in fifteen million).
const TokenBytes = 9

// Key is a pseudonym key.
type Key struct {
	secret []byte
}

// ID is the key's fingerprint, safe to store and show: which key made a
// set of tokens.
func (k Key) ID() string {
	sum := sha256.Sum256(append([]byte("collider pseudonym key "), k.secret...))
	return hex.EncodeToString(sum[:8])
}

// Token is the person's token: url-safe base64 of the first TokenBytes of
// HMAC-SHA-256(key, id). TokenSQL computes the same in DuckDB.
func (k Key) Token(id string) string {
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte(id))
	return base64.URLEncoding.EncodeToString(mac.Sum(nil)[:TokenBytes])
}

// Pads are the two HMAC pads of the key (the key XOR 0x36 and 0x5c, each
// 64 bytes), the parameters of TokenSQL.
func (k Key) Pads() (inner, outer []byte) {
	inner, outer = make([]byte, 64), make([]byte, 64)
	copy(inner, k.secret)
	copy(outer, k.secret)
	for i := range inner {
		inner[i] ^= 0x36
		outer[i] ^= 0x5c
	}
	return inner, outer
}

// TokenSQL is the SQL expression of Token over a VARCHAR column, with the
// inner and outer pads (Pads) bound as the named BLOB parameters
// $inner_pad and $outer_pad: HMAC is two SHA-256 passes.
func TokenSQL(column string) string {
	return fmt.Sprintf(`translate(to_base64(unhex(substr(sha256(CAST($outer_pad AS BLOB) || unhex(sha256(CAST($inner_pad AS BLOB) || encode(%s)))), 1, %d))), '+/', '-_')`,
		column, 2*TokenBytes)
}

// LoadKey reads the key file, creating it with a new random key (mode 0600)
// when it does not exist. A key file readable by others is refused.
func LoadKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return writeKey(path)
	}
	if err != nil {
		return Key{}, fmt.Errorf("pseudonym key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return Key{}, fmt.Errorf("pseudonym key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Key{}, fmt.Errorf("pseudonym key %s: mode %o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) != KeySize {
		return Key{}, fmt.Errorf("pseudonym key %s: not %d bytes in hex", path, KeySize)
	}
	return Key{secret: secret}, nil
}

// RotateKey replaces the key file with a new random key; the old one is
// kept beside it as PATH.old until the next rotation. Every token made with
// the old key is made again at the next refresh of the sandbox.
func RotateKey(path string) (Key, error) {
	if _, err := os.Stat(path); err == nil {
		if err := os.Rename(path, path+".old"); err != nil {
			return Key{}, fmt.Errorf("pseudonym key: %w", err)
		}
	}
	return writeKey(path)
}

func writeKey(path string) (Key, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("pseudonym key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return Key{}, fmt.Errorf("pseudonym key: %w", err)
	}
	// Written beside and renamed, so that a crash never leaves half a key.
	tmp := path + ".new"
	os.Remove(tmp) // a left-over keeps its mode through WriteFile
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return Key{}, fmt.Errorf("pseudonym key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Key{}, fmt.Errorf("pseudonym key: %w", err)
	}
	return Key{secret: secret}, nil
}

// NewKey returns a key from its bytes, for tests.
func NewKey(secret []byte) Key { return Key{secret: append([]byte(nil), secret...)} }
