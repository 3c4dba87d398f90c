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

// One rule for text shown masked, used by every place that masks.
func TestMaskText_OneRule(t *testing.T) {
	const id, name = "62010219800229123X", "张三"
	for _, tc := range []struct{ name, id, person, text, want string }{
		{"the person's ID and birth date", id, name,
			`{"id":"62010219800229123X","id_birth_date":"1980-02-29","raw":"19800229","death_date":"2021-03-02"}`,
			`{"id":"620102********123X","id_birth_date":"****-**-**","raw":"********","death_date":"2021-03-02"}`},
		{"another valid ID, the name, but not other numbers", "620102195001100115", name,
			"参保人620102195001100115（张三）于2021-03-02死亡，结算号123456789012345678，机构P62010200456，同户11010519491231002X。",
			"参保人620102********0115（张*）于2021-03-02死亡，结算号123456789012345678，机构P62010200456，同户110105********002X。"},
		{"a 15-digit legacy ID", "", "",
			"旧号码110105491231002在案", "旧号码110105*****1002在案"},
		{"a one-character name is left in the text", id, "王",
			"王府井大药房", "王府井大药房"},
		{"nothing to mask", "", "", "no id here", "no id here"},
	} {
		if got := MaskText(tc.text, tc.id, tc.person); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	if MaskName("欧阳娜娜") != "欧*" || MaskName("王") != "*" || MaskName("") != "" {
		t.Error("MaskName")
	}
}
