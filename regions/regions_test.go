package regions

import (
	"math"
	"testing"
)

func TestShipped_EveryRegionHasAPoint(t *testing.T) {
	tab, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	all := tab.All()
	if len(all) != 3511 {
		t.Fatalf("got %d regions, want 3511", len(all))
	}
	for _, r := range all {
		if r.Lon == 0 && r.Lat == 0 && r.Code != "100000" {
			t.Errorf("%s %s has no point", r.Code, r.Name)
		}
	}
}

func TestLookup_FallsBackCountyCityProvince(t *testing.T) {
	tab, _ := Shipped()
	cases := []struct{ in, want string }{
		{"620102", "620102"}, // 城关区, known county
		{"620199", "620100"}, // unknown county of 兰州市 → city
		{"629999", "620000"}, // unknown city → province
		{"620000", "620000"},
	}
	for _, c := range cases {
		r, ok := tab.Lookup(c.in)
		if !ok || r.Code != c.want {
			t.Errorf("Lookup(%s) = %s, %v; want %s", c.in, r.Code, ok, c.want)
		}
	}
	for _, bad := range []string{"990101", "62010", "62010a", ""} {
		if _, ok := tab.Lookup(bad); ok {
			t.Errorf("Lookup(%q) found something", bad)
		}
	}
}

func TestCounties_Gansu(t *testing.T) {
	tab, _ := Shipped()
	cs := tab.Counties("620000")
	if len(cs) < 80 {
		t.Fatalf("Gansu has %d counties in the table", len(cs))
	}
	for _, c := range cs {
		if c.Code[:2] != "62" || c.Level != "county" {
			t.Fatalf("unexpected %v", c)
		}
	}
}

func TestDistanceKm_LanzhouBeijing(t *testing.T) {
	// 兰州 (103.83, 36.06) to 北京 (116.41, 39.90): about 1,190 km.
	d := DistanceKm(36.061089, 103.834303, 39.904211, 116.407394)
	if math.Abs(d-1183) > 15 {
		t.Fatalf("distance %.1f km", d)
	}
}
