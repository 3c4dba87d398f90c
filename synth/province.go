// province.go builds the synthetic province that every person is drawn from:
// Gansu's counties with their share of the population, the mapping from a
// person's index to a county and a unique ID number, and the designated
// institutions (定点医药机构) of every county.

package synth

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sort"

	"collider/regions"
)

// cityPop is the 2020 census population of Gansu's cities in units of
// 10,000; a city's population is split evenly among its counties.
var cityPop = []struct {
	code string
	pop  int64
}{
	{"620100", 436}, {"620200", 31}, {"620300", 44}, {"620400", 151}, {"620500", 298},
	{"620600", 146}, {"620700", 113}, {"620800", 185}, {"620900", 106}, {"621000", 218},
	{"621100", 252}, {"621200", 241}, {"622900", 210}, {"623000", 69},
}

// jiayuguan has no county-level rows of its own in the table (only its
// 市辖区 placeholder), so that placeholder stands for the whole city.
const jiayuguan = "620201"

// Birth dates of the synthetic population: 1935-01-01 to 2024-12-31, so that
// every person is born before the settlement year.
var (
	birthFirst = epochDays(1935, 1, 1)
	birthLast  = epochDays(2024, 12, 31)
)

// place is a point a record can be at: a region's seat.
type place struct {
	code     string
	name     string
	lat, lon float64
}

type county struct {
	place
	city     string // city code
	cityName string
	weight   int64
	first    int64 // first position of its persons in the county permutation
	pop      int64

	hospitals, clinics, pharmacies []int32 // indices into world.insts

	sameCity  []int32 // other counties of the same city
	cityNear  []int32 // counties of the same city within 50 km, for hospital stays
	farCounty []int32 // counties of other Gansu cities more than 340 km away
	nearOther []int32 // counties of other Gansu cities less than 75 km away
	band540   []int32 // indices into world.all of seats 530–555 km away
}

type institution struct {
	id, name, kind, region string
	lat, lon               float64 // as written; 0 means null
	elat, elon             float64 // effective point: lat/lon, else the region's seat
	county                 int32
}

// affine is a permutation of [0, n): i → (a·i + b) mod n with gcd(a, n) = 1.
// It spreads consecutive person indices over counties and ranks without
// holding any table.
type affine struct{ a, b, n uint64 }

func newAffine(r *rand.Rand, n uint64) affine {
	if n <= 1 {
		return affine{a: 1, n: 1}
	}
	a := n/3 + r.Uint64N(n/3+1)
	if a == 0 {
		a = 1
	}
	for gcd(a, n) != 1 {
		a++
	}
	return affine{a: a % n, b: r.Uint64N(n), n: n}
}

func (f affine) at(i uint64) uint64 {
	if f.n <= 1 {
		return 0
	}
	return (mulmod(i%f.n, f.a, f.n) + f.b) % f.n
}

// mulmod is a·b mod n without overflow, for a, b < n.
func mulmod(a, b, n uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	_, rem := bits.Div64(hi, lo, n)
	return rem
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// world is everything the workers share, read-only once built.
type world struct {
	opt      Options
	tab      *regions.Table
	counties []county
	insts    []institution
	all      []place // every county-level seat in China, for travel
	dests    []place // major cities of other provinces

	persons       int64
	baseSettle    int64 // settlements left to the baseline after planted ones
	scenarioCount int64 // persons carrying a scenario
	permCounty    affine
	permRank      affine // settlement-count rank
	permLoc       affine // location-count rank
	birthA        uint64
	birthB        uint64
	birthM        uint64
	zeroBand      int64 // ranks below this have no settlement in the year
	locZeroBand   int64
}

var majorCities = []string{
	"110101", "310101", "440104", "440304", "510104", "500103", "610102", "650102",
	"630102", "640104", "410102", "420102", "330102", "320102", "530102", "150102",
	"540102", "460202", "230102", "370102", "210102",
}

func newWorld(opt Options) (*world, error) {
	tab, err := regions.Shipped()
	if err != nil {
		return nil, err
	}
	w := &world{opt: opt, tab: tab, persons: opt.Persons}
	r := rand.New(rand.NewPCG(mix(uint64(opt.Seed)), 0x9e3779b97f4a7c15))

	for _, reg := range tab.All() {
		if reg.Level == "county" && reg.Name != "市辖区" && reg.Name != "县" {
			w.all = append(w.all, place{code: reg.Code, name: reg.Name, lat: reg.Lat, lon: reg.Lon})
		}
	}
	for _, code := range majorCities {
		reg, ok := tab.Lookup(code)
		if !ok || reg.Code != code {
			return nil, fmt.Errorf("synth: region %s missing from the reference table", code)
		}
		w.dests = append(w.dests, place{code: code, name: reg.City + reg.Name, lat: reg.Lat, lon: reg.Lon})
	}

	// Counties and their weights: a city's population split evenly; 2520 is
	// divisible by every county count up to 10, so weights stay integers.
	var total int64
	for _, cp := range cityPop {
		city, ok := tab.Lookup(cp.code)
		if !ok {
			return nil, fmt.Errorf("synth: city %s missing from the reference table", cp.code)
		}
		cs := tab.Counties(cp.code)
		if len(cs) == 0 {
			reg, _ := tab.Lookup(jiayuguan)
			reg.Name = city.Name
			cs = []regions.Region{reg}
		}
		for _, reg := range cs {
			c := county{place: place{code: reg.Code, name: reg.Name, lat: reg.Lat, lon: reg.Lon},
				city: cp.code, cityName: city.Name, weight: cp.pop * 2520 / int64(len(cs))}
			if c.lat == 0 && c.lon == 0 {
				c.lat, c.lon = city.Lat, city.Lon
			}
			total += c.weight
			w.counties = append(w.counties, c)
		}
	}
	var cum int64
	for i := range w.counties {
		c := &w.counties[i]
		c.first = w.persons * cum / total
		cum += c.weight
		c.pop = w.persons*cum/total - c.first
	}

	w.permCounty = newAffine(r, uint64(w.persons))
	w.permRank = newAffine(r, uint64(w.persons))
	w.permLoc = newAffine(r, uint64(w.persons))
	w.birthM = uint64(birthLast-birthFirst+1) * 999
	w.birthA = newAffine(r, w.birthM).a
	w.birthB = r.Uint64N(w.birthM)
	w.zeroBand = w.persons * zeroShare / 1000
	w.locZeroBand = w.persons * locZeroShare / 1000

	w.buildInstitutions(r)
	w.buildNeighbours()
	return w, nil
}

// buildInstitutions gives every county hospitals, clinics and pharmacies in
// proportion to its population (about one per 1,500 persons, never fewer
// than three hospitals and three pharmacies), within 10 km of its seat.
func (w *world) buildInstitutions(r *rand.Rand) {
	for ci := range w.counties {
		c := &w.counties[ci]
		n := c.pop / 1500
		counts := [3]int64{max(3, n*15/100), max(2, n*25/100), max(3, n*60/100)}
		seqH, seqP := 0, 0
		for kind, cnt := range counts {
			for i := int64(0); i < cnt; i++ {
				in := institution{county: int32(ci), region: c.code}
				switch kind {
				case 0:
					seqH++
					in.kind, in.id, in.name = "hospital", instID('H', c.code, seqH), hospitalName(c, int(i))
				case 1:
					seqH++
					in.kind, in.id, in.name = "clinic", instID('H', c.code, seqH), clinicName(c, int(i), r)
				default:
					seqP++
					in.kind, in.id, in.name = "pharmacy", instID('P', c.code, seqP), pharmacyName(c, int(i), r)
				}
				// Uniform in a disc of 10 km around the seat.
				dist := 10 * math.Sqrt(r.Float64())
				in.elat, in.elon = offset(c.lat, c.lon, dist, r.Float64()*2*math.Pi)
				in.lat, in.lon = in.elat, in.elon
				if r.IntN(10) == 0 { // about 10% leave the point to the region's seat
					in.lat, in.lon = 0, 0
					in.elat, in.elon = c.lat, c.lon
				}
				idx := int32(len(w.insts))
				w.insts = append(w.insts, in)
				switch kind {
				case 0:
					c.hospitals = append(c.hospitals, idx)
				case 1:
					c.clinics = append(c.clinics, idx)
				default:
					c.pharmacies = append(c.pharmacies, idx)
				}
			}
		}
	}
}

// buildNeighbours precomputes, per county, the places the scenarios need:
// other-city counties far away and close by, and seats at about 540 km.
func (w *world) buildNeighbours() {
	for ci := range w.counties {
		c := &w.counties[ci]
		for cj := range w.counties {
			o := &w.counties[cj]
			if cj == ci {
				continue
			}
			d := regions.DistanceKm(c.lat, c.lon, o.lat, o.lon)
			switch {
			case o.city == c.city:
				c.sameCity = append(c.sameCity, int32(cj))
				if d < 50 {
					c.cityNear = append(c.cityNear, int32(cj))
				}
			case d > 340:
				c.farCounty = append(c.farCounty, int32(cj))
			case d < 75:
				c.nearOther = append(c.nearOther, int32(cj))
			}
		}
		for i, p := range w.all {
			d := regions.DistanceKm(c.lat, c.lon, p.lat, p.lon)
			if d >= 530 && d <= 555 {
				c.band540 = append(c.band540, int32(i))
			}
		}
	}
}

// countyOf returns the county of a person and the person's index within it.
func (w *world) countyOf(p int64) (int, int64) {
	q := int64(w.permCounty.at(uint64(p)))
	i := sort.Search(len(w.counties), func(i int) bool { return w.counties[i].first+w.counties[i].pop > q })
	return i, q - w.counties[i].first
}

// birthSlot maps a person's index within its county to a birth date and a
// 3-digit sequence, bijectively, so that ID numbers never repeat; the
// county's own offset keeps neighbouring counties from sharing dates.
func (w *world) birthSlot(county int, k int64) (birth int64, seq int) {
	off := (w.birthB + mix(uint64(county))) % w.birthM
	s := (mulmod(uint64(k)%w.birthM, w.birthA, w.birthM) + off) % w.birthM
	return birthFirst + int64(s/999), int(s%999) + 1
}

// offset moves a point by dist km on a bearing (radians), on the sphere of
// the models' haversine.
func offset(lat, lon, dist, bearing float64) (float64, float64) {
	rad := math.Pi / 180
	d := dist / regions.EarthRadiusKm
	la := lat * rad
	lo := lon * rad
	la2 := math.Asin(math.Sin(la)*math.Cos(d) + math.Cos(la)*math.Sin(d)*math.Cos(bearing))
	lo2 := lo + math.Atan2(math.Sin(bearing)*math.Sin(d)*math.Cos(la), math.Cos(d)-math.Sin(la)*math.Sin(la2))
	return round6(la2 / rad), round6(lo2 / rad)
}

// round6 keeps coordinates at about 0.1 m, as a real feed would.
func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

func instID(letter byte, region string, seq int) string {
	b := make([]byte, 0, 12)
	b = append(b, letter)
	b = append(b, region...)
	return string(appendDigits(b, int64(seq), 5))
}

// mix is splitmix64's finalizer: it turns (seed, index) pairs into
// well-spread PCG seeds so that neighbouring persons get unrelated streams.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
