package personid

import (
	"testing"
	"time"
)

func TestNormalize_PublicVectors(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"11010519491231002X", "11010519491231002X", true},
		{"440308199901101512", "440308199901101512", true},
		{"110101199003078670", "110101199003078670", true},
		{"430302199312194239", "430302199312194239", true},
		{" 11010519491231002x ", "11010519491231002X", true},
		{"610104620927690", "610104196209276908", true},
		{"440308199901101513", "", false}, // wrong check character
		{"11010119900307867X", "", false}, // wrong check character
		{"440308199902301512", "", false}, // 30 February
		{"610104620932690", "", false},    // 32 September
		{"", "", false},
		{"12345", "", false},
		{"4403081999011015AB", "", false},
	}
	for _, c := range cases {
		got, err := Normalize(c.in)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if !c.ok && err == nil {
			t.Errorf("Normalize(%q) = %q; want an error", c.in, got)
		}
	}
}

func TestMake_ProducesValidIDs(t *testing.T) {
	id := Make("620102", time.Date(1980, 2, 29, 0, 0, 0, 0, time.UTC), 123)
	if got, err := Normalize(id); err != nil || got != id {
		t.Fatalf("Make gave %q which does not normalize: %v", id, err)
	}
}

func TestMask(t *testing.T) {
	if got := Mask("62010219800229123X"); got != "620102********123X" {
		t.Fatalf("Mask = %q", got)
	}
}

func TestMaskIn_HidesTheIDAndItsBirthDate(t *testing.T) {
	id := "62010219800229123X"
	text := `{"id":"62010219800229123X","id_birth_date":"1980-02-29","raw":"19800229","death_date":"2021-03-02"}`
	want := `{"id":"620102********123X","id_birth_date":"****-**-**","raw":"********","death_date":"2021-03-02"}`
	if got := MaskIn(text, id); got != want {
		t.Fatalf("MaskIn =\n%s\nwant\n%s", got, want)
	}
	if got := MaskIn("no id here", ""); got != "no id here" {
		t.Fatalf("MaskIn without an id = %q", got)
	}
}
