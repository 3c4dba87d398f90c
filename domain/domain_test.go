package domain

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// An error made with %w keeps its cause for errors.Is and errors.As, and
// its code through further wrapping.
func TestErrorf_WrapsTheCauseAndKeepsItsCode(t *testing.T) {
	err := Errorf(ENOTFOUND, "model %q: %w", "x", context.DeadlineExceeded)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("the cause is lost")
	}
	wrapped := fmt.Errorf("preview: %w", err)
	if ErrorCode(wrapped) != ENOTFOUND || ErrorMessage(wrapped) != `model "x": context deadline exceeded` {
		t.Errorf("code %s, message %q", ErrorCode(wrapped), ErrorMessage(wrapped))
	}
	if ErrorCode(errors.New("plain")) != EINTERNAL || ErrorMessage(errors.New("secret detail")) != "internal error" {
		t.Error("an unknown error is not internal")
	}
	if e := Errorf(EINVALID, "no cause"); errors.Unwrap(e) != nil {
		t.Error("an error without %w wraps something")
	}
}

func TestPageLimit_DefaultsAndCaps(t *testing.T) {
	for n, want := range map[int]int{-1: 100, 0: 100, 1: 1, 1000: 1000, 1001: MaxPage} {
		if got := PageLimit(n); got != want {
			t.Errorf("PageLimit(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestWall_ReadsUTCAsChinaWallClock(t *testing.T) {
	utc := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	w := Wall(utc)
	if w.Hour() != 10 || w.Location() != ChinaTime || DBTime(w) != "2025-03-01 10:00:00.000000" {
		t.Errorf("wall %v, db %s", w, DBTime(w))
	}
	if DBTime(utc) != "2025-03-01 18:00:00.000000" {
		t.Errorf("an instant in UTC binds as %s", DBTime(utc))
	}
}
