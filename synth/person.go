// person.go generates one person at a time: identity, civil status, the
// year's settlements, travel and registrations, all from a PRNG seeded by
// (Seed, person index), so that persons are independent of each other and
// of the order in which workers produce them.
//
// A normal person must never be flagged by a model with default parameters,
// so the year is laid out as a calendar: planted events (scenarios) first,
// with a guard zone around them; then the baseline settlements on days the
// guards leave free; then travel only on days at least four days away from
// any settlement. Normal settlements are at institutions of the hukou city,
// before any death or cancellation, and inpatient stays never overlap.

package synth

import (
	"math"
	"math/rand/v2"

	"collider/regions"
)

// Shares of the population, per mille.
const (
	zeroShare    = 300 // persons with no settlement in the year (the dead of past years among them)
	locZeroShare = 450 // persons with no location record
)

// noEnd marks a missing end: visits and purchases, an abroad stay with no return yet.
const noEnd = math.MinInt64

const (
	inpatient  = "inpatient"
	outpatient = "outpatient"
	pharmacy   = "pharmacy"

	alive     = "alive"
	deceased  = "deceased"
	cancelled = "cancelled"
)

// dayset is a set of days of 2025 (0..383, a little past the year's end).
type dayset [6]uint64

const daysetLen = 384

func (s *dayset) has(d int) bool {
	return d >= 0 && d < daysetLen && s[d>>6]&(1<<(d&63)) != 0
}

func (s *dayset) setRange(a, b int) {
	a = max(a, 0)
	b = min(b, daysetLen-1)
	for d := a; d <= b; d++ {
		s[d>>6] |= 1 << (d & 63)
	}
}

func (s *dayset) clear(d int) {
	if d >= 0 && d < daysetLen {
		s[d>>6] &^= 1 << (d & 63)
	}
}

func (s *dayset) any(a, b int) bool {
	a = max(a, 0)
	b = min(b, daysetLen-1)
	for d := a; d <= b; d++ {
		if s[d>>6]&(1<<(d&63)) != 0 {
			return true
		}
	}
	return false
}

// dilate returns the set grown by k days on both sides.
func (s dayset) dilate(k int) dayset {
	out := s
	l, r := s, s
	for i := 0; i < k; i++ {
		l, r = l.shl(), r.shr()
		for j := range out {
			out[j] |= l[j] | r[j]
		}
	}
	return out
}

func (s dayset) shl() dayset { // day d → d+1
	var o dayset
	for j := len(s) - 1; j >= 0; j-- {
		o[j] = s[j] << 1
		if j > 0 {
			o[j] |= s[j-1] >> 63
		}
	}
	return o
}

func (s dayset) shr() dayset { // day d → d-1
	var o dayset
	for j := range s {
		o[j] = s[j] >> 1
		if j+1 < len(s) {
			o[j] |= s[j+1] << 63
		}
	}
	return o
}

// gen is one worker's generator; it is reused from person to person.
type gen struct {
	w         *world
	pcg       rand.PCG
	r         *rand.Rand
	b         *batch
	countOnly bool // only plant the scenario (to count planted settlements)

	c      *county
	id     string // 18 characters
	sid    string // as written in settlements: now and then a legacy or lower-case form
	name   string
	birth  int64 // days since 1970-01-01
	male   bool
	rank   int64
	scen   int // index into scenarios, or -1
	status string
	death  int   // day of death (days since 2025-01-01)
	update int64 // updated_at
	winHi  int   // last day a baseline settlement may touch
	locHi  int   // last day of a baseline location record

	noResident, noCivil, noTravel, noPharmacy bool
	truthAll                                  int8 // +1: every settlement flagged; -1: every settlement a near miss

	blocked, stay, used, free dayset
}

func newGen(w *world, b *batch) *gen {
	g := &gen{w: w, b: b}
	g.r = rand.New(&g.pcg)
	return g
}

// person generates person p into g.b.
func (g *gen) person(p int64) {
	w := g.w
	g.pcg.Seed(mix(uint64(w.opt.Seed)^0x5851f42d4c957f2d), mix(uint64(p)))
	ci, k := w.countyOf(p)
	g.c = &w.counties[ci]
	birth, seq := w.birthSlot(ci, k)
	g.birth, g.male = birth, seq%2 == 1
	g.id = makeID(g.c.code, birth, seq)
	g.sid = g.id
	g.name = personName(g.r, g.male)
	g.rank = int64(w.permRank.at(uint64(p)))
	g.status, g.death, g.winHi, g.locHi = alive, 0, lastDay, lastDay
	born := int(birth - day2025) // day of birth, before 2025
	from := max(-3288, born+1)
	g.update = at(from+g.r.IntN(181-from), 8+g.r.IntN(10), g.r.IntN(60)) // since 2016 (or birth), until mid 2025
	g.noResident, g.noCivil, g.noTravel, g.noPharmacy, g.truthAll = false, false, false, false, 0
	g.blocked, g.stay, g.used = dayset{}, dayset{}, dayset{}
	g.scen = -1

	if ord, ok := w.scenarioOrdinal(p); ok {
		for i := range scenarios {
			j := int((ord + int64(i)) % int64(len(scenarios)))
			g.scen = j
			if scenarios[j].plant(g) { // checks that it fits before it writes anything
				g.b.scenarios[j]++
				break
			}
			g.scen = -1
		}
	} else {
		g.normalStatus()
	}
	if g.countOnly {
		return
	}
	g.baseline(w.settleCount(g.rank))
	g.free = g.freeDays()
	if !g.noTravel {
		g.travel(w.locCount(int64(w.permLoc.at(uint64(p)))))
	}
	if g.scen < 0 {
		g.rareIntervals()
		g.floating()
	}
	if !g.noResident {
		g.b.residents = append(g.b.residents, residentRow{
			PersonID: g.id, Name: g.name, HukouRegion: g.c.code, BirthDate: dateString(g.birth-day2025, false),
		})
	}
	if !g.noCivil {
		row := civilStatusRow{PersonID: g.id, Status: g.status, UpdatedAt: timeString(g.update, layoutCompact)}
		if g.status == deceased {
			row.DeathDate = g.b.str.ptr(dateString(int64(g.death), true))
		}
		g.b.civil = append(g.b.civil, row)
	}
}

// normalStatus decides the civil status of a person without a scenario.
// The dead of past years are taken from the persons with no settlement this
// year, so that the settlement total stays on target.
func (g *gen) normalStatus() {
	r := g.r
	born := int(g.birth - day2025)
	x := r.Float64()
	if g.rank < g.w.zeroBand {
		switch {
		case x < 0.24: // died 2015–2024: about 0.7% a year
			if lo := max(-3653, born+365); lo <= -1 {
				g.setDeceased(lo + r.IntN(-lo))
			}
		case x < 0.247: // hukou cancelled in an earlier year
			if lo := max(-3653, born+1); lo <= -1 {
				g.setCancelled(at(lo+r.IntN(-lo), 9+r.IntN(8), r.IntN(60)))
			}
		}
	} else {
		switch {
		case x < 0.007: // dies this year: every settlement ends before the death date
			g.setDeceased(30 + r.IntN(lastDay-29))
		case x < 0.008:
			g.setCancelled(at(60+r.IntN(lastDay-59), 9+r.IntN(8), r.IntN(60)))
		}
	}
	// A few IDs are written in settlements as their 15-digit legacy form or
	// with a lower-case x, so that matching has to normalize.
	if r.IntN(1000) < 12 { // about 0.5% of all persons: not every ID has an x or a 19xx birth
		switch {
		case g.id[17] == 'X':
			g.sid = g.id[:17] + "x"
		case g.id[6:8] == "19":
			g.sid = g.id[:6] + g.id[8:17]
		}
	}
}

func (g *gen) setDeceased(day int) {
	g.status, g.death = deceased, day
	g.update = at(day+1+g.r.IntN(20), 8+g.r.IntN(10), g.r.IntN(60))
	g.winHi = min(g.winHi, day-1)
	g.locHi = min(g.locHi, day-1)
}

func (g *gen) setCancelled(t int64) {
	g.status, g.update = cancelled, t
	g.winHi = min(g.winHi, dayOf(t)-1)
	g.locHi = min(g.locHi, dayOf(t)-1)
}

// settleCount is the number of baseline settlements of the person at a rank:
// cumulative counts follow a cubic curve over the ranks above the zero band,
// so that counts are skewed like real ones and add up to exactly baseSettle.
func (w *world) settleCount(rank int64) int {
	return int(w.cum(rank+1, w.zeroBand, w.baseSettle, 3) - w.cum(rank, w.zeroBand, w.baseSettle, 3))
}

func (w *world) locCount(rank int64) int {
	return int(w.cum(rank+1, w.locZeroBand, w.baseLoc(), 2) - w.cum(rank, w.locZeroBand, w.baseLoc(), 2))
}

func (w *world) cum(r, zero, total int64, power int) int64 {
	if r <= zero {
		return 0
	}
	if r >= w.persons {
		return total
	}
	t := float64(r-zero) / float64(w.persons-zero)
	v := t
	for i := 1; i < power; i++ {
		v *= t
	}
	return int64(float64(total) * v)
}

// baseLoc is the location budget handed out by rank; some of it is never
// used (the dead of past years travel no more, busy calendars leave no free
// days), which the factor makes up for.
func (w *world) baseLoc() int64 { return w.opt.Locations * 108 / 100 }

// scenarioOrdinal says whether person p carries a scenario, and which.
// Scenario persons are evenly spaced over the person indices; the county
// permutation spreads them over the province.
func (w *world) scenarioOrdinal(p int64) (int64, bool) {
	k, n := w.scenarioCount, w.persons
	ord := (p*k + n - 1) / n
	if ord < k && ord*n/k == p {
		return ord, true
	}
	return 0, false
}

// baseline places the person's ordinary settlements of the year.
func (g *gen) baseline(n int) {
	r := g.r
	for i := 0; i < n; i++ {
		x := r.IntN(100)
		switch {
		case x < 6:
			if g.placeStay() {
				continue
			}
			g.placeVisit(outpatient)
		case x < 46 || g.noPharmacy:
			g.placeVisit(outpatient)
		default:
			g.placeVisit(pharmacy)
		}
	}
}

func (g *gen) placeStay() bool {
	r := g.r
	for try := 0; try < 8; try++ {
		l := 2 + r.IntN(19)
		if try >= 4 {
			l = 2 + r.IntN(4)
		}
		if g.winHi-l < 0 {
			continue
		}
		a := r.IntN(g.winHi - l + 1)
		if g.blocked.any(a, a+l) || g.stay.any(a, a+l) || g.used.any(a, a+l) {
			continue
		}
		h := g.inpatientHospital()
		admit := at(a, 7, 0) + int64(r.IntN(13*60))*minute
		discharge := at(a+l, 8, 0) + int64(r.IntN(180))*minute
		total, fund := g.amounts(inpatient)
		g.settle(h, inpatient, admit, discharge, discharge+int64(10+r.IntN(230))*minute, total, fund)
		return true
	}
	return false
}

func (g *gen) placeVisit(typ string) {
	r := g.r
	if g.winHi < 0 {
		return
	}
	d := -1
	for try := 0; try < 8; try++ {
		x := r.IntN(g.winHi + 1)
		if !g.blocked.has(x) && !g.stay.has(x) && (try >= 4 || !g.used.has(x)) {
			d = x
			break
		}
	}
	if d < 0 { // a crowded calendar: take the next day that is allowed at all
		s := r.IntN(g.winHi + 1)
		for i := 0; i <= g.winHi; i++ {
			x := (s + i) % (g.winHi + 1)
			if !g.blocked.has(x) && !g.stay.has(x) {
				d = x
				break
			}
		}
		if d < 0 {
			return
		}
	}
	g.visit(g.homeInst(typ), typ, d, 0)
}

// visit settles an outpatient visit or a purchase on a day at daytime hours;
// with hh > 0 the visit starts in that hour.
func (g *gen) visit(in int32, typ string, day int, hh int) int32 {
	r := g.r
	var start, settled int64
	if typ == pharmacy {
		start = at(day, 8, 0) + int64(r.IntN(14*60))*minute // pharmacies open 8–22h
		if hh > 0 {
			start = at(day, hh, r.IntN(60))
		}
		settled = start + int64(r.IntN(3))*minute
	} else {
		start = at(day, 8, 0) + int64(r.IntN(570))*minute
		if hh > 0 {
			start = at(day, hh, r.IntN(60))
		}
		settled = start + int64(5+r.IntN(85))*minute
	}
	total, fund := g.amounts(typ)
	return g.settle(in, typ, start, noEnd, settled, total, fund)
}

// settle appends a settlement and books its days in the calendar. The
// settlement id is left to the writer, which numbers rows in output order.
func (g *gen) settle(in int32, typ string, start, end, settled int64, total, fund float64) int32 {
	inst := &g.w.insts[in]
	row := settlementRow{
		PersonID: g.sid, PersonName: g.name, InstitutionID: inst.id, VisitType: typ,
		VisitStart: millis(start), SettledAt: millis(settled),
		TotalAmount: total, FundAmount: fund, InsuredRegion: g.c.code,
	}
	if typ == inpatient {
		row.VisitEnd = g.b.i64.ptr(millis(end))
		g.stay.setRange(dayOf(start), dayOf(end))
	}
	g.used.setRange(dayOf(start), dayOf(settled))
	local := int32(len(g.b.settlements))
	g.b.settlements = append(g.b.settlements, row)
	if g.truthAll != 0 && g.scen >= 0 {
		g.b.truth = append(g.b.truth, truthRow{local: local, scenario: uint8(g.scen), flag: g.truthAll > 0, reason: scenarios[g.scen].reason})
	}
	return local
}

func (g *gen) amounts(typ string) (total, fund float64) {
	r := g.r
	switch typ {
	case inpatient:
		total = math.Exp(math.Log(2000) + r.Float64()*math.Log(30)) // 2,000–60,000 yuan
		fund = total * (0.55 + 0.2*r.Float64())
	case outpatient:
		u := r.Float64()
		total = 50 + 750*u*u
		fund = total * (0.3 + 0.4*r.Float64())
	default:
		u := r.Float64()
		total = 10 + 490*u*u
		fund = total * (0.5 + 0.5*r.Float64())
	}
	return cents(total), cents(fund)
}

func cents(x float64) float64 { return math.Round(x*100) / 100 }

// homeInst picks an institution of the person's county for a visit type.
func (g *gen) homeInst(typ string) int32 {
	c, r := g.c, g.r
	switch typ {
	case pharmacy:
		return c.pharmacies[r.IntN(len(c.pharmacies))]
	case outpatient:
		if r.IntN(5) < 2 {
			return c.clinics[r.IntN(len(c.clinics))]
		}
	}
	return c.hospitals[r.IntN(len(c.hospitals))]
}

// inpatientHospital is a hospital of the home county, or now and then one
// of a neighbouring county of the same city.
func (g *gen) inpatientHospital() int32 {
	c, r := g.c, g.r
	if len(c.cityNear) > 0 && r.IntN(5) == 0 {
		o := &g.w.counties[c.cityNear[r.IntN(len(c.cityNear))]]
		return o.hospitals[r.IntN(len(o.hospitals))]
	}
	return c.hospitals[r.IntN(len(c.hospitals))]
}

// freeDays are the days a normal location record may fall on: not guarded by
// a scenario and at least four days from any settlement.
func (g *gen) freeDays() dayset {
	busy := g.used.dilate(4)
	var free dayset
	for d := 0; d <= min(g.locHi, lastDay); d++ {
		if !busy.has(d) && !g.blocked.has(d) {
			free[d>>6] |= 1 << (d & 63)
		}
	}
	return free
}

// freeFrom says whether every day from d to the end of the year is free:
// no settlement, trip or planted event left to fall into an open interval.
func (g *gen) freeFrom(d int) bool {
	for ; d <= lastDay; d++ {
		if !g.free.has(d) {
			return false
		}
	}
	return true
}

// findRun finds a run of free days starting from a random day: the first
// free day found and up to want-1 more free days after it.
func (g *gen) findRun(want int) (int, int, bool) {
	hi := min(g.locHi, lastDay)
	if hi < 0 {
		return 0, 0, false
	}
	s := g.r.IntN(hi + 1)
	for i := 0; i <= hi; i++ {
		d := (s + i) % (hi + 1)
		if !g.free.has(d) {
			continue
		}
		e := d
		for e+1 <= hi && e-d+1 < want && g.free.has(e+1) {
			e++
		}
		return d, e, true
	}
	return 0, 0, false
}

// travel spends the person's location budget on trips: a departure near
// home, a hotel at the destination, a departure back.
func (g *gen) travel(budget int) {
	r := g.r
	for budget > 0 {
		want := 2 + r.IntN(5)
		if budget < 3 {
			want = 1
		}
		t1, t2, ok := g.findRun(want)
		if !ok {
			return
		}
		for d := t1 - 1; d <= t2+1; d++ { // trips never touch each other
			g.free.clear(d)
		}
		budget -= g.trip(t1, t2, budget)
	}
}

func (g *gen) trip(t1, t2, budget int) int {
	r := g.r
	home := g.c.place
	dst := g.tripDest(t2 == t1)
	if budget == 1 { // a lone hotel stay
		lat, lon := g.jitter(dst.lat, dst.lon, 5)
		g.loc("hotel", at(t1, 18+r.IntN(4), r.IntN(60)), at(t1+1, 8+r.IntN(4), r.IntN(60)), dst.code, lat, lon)
		return 1
	}
	d := regions.DistanceKm(home.lat, home.lon, dst.lat, dst.lon)
	mode, dur := "rail", int64(30+d/2)*minute // 120 km/h and half an hour
	if d > 1800 || (d > 700 && r.IntN(10) < 7) {
		mode, dur = "flight", int64(90+d*60/700)*minute
	}
	depart := at(t1, 7+r.IntN(5), r.IntN(60))
	lat, lon := g.jitter(home.lat, home.lon, 5)
	g.loc(mode, depart, depart+dur, home.code, lat, lon)
	back := depart + dur + int64(2+r.IntN(3))*hour
	n := 2
	if t2 > t1 && budget >= 3 {
		checkIn := max(depart+dur+30*minute, at(t1, 17, 0)) + int64(r.IntN(120))*minute
		lat, lon = g.jitter(dst.lat, dst.lon, 8)
		g.loc("hotel", checkIn, at(t2, 8+r.IntN(4), r.IntN(60)), dst.code, lat, lon)
		n = 3
	}
	if t2 > t1 {
		back = at(t2, 13+r.IntN(6), r.IntN(60))
	}
	lat, lon = g.jitter(dst.lat, dst.lon, 5)
	g.loc(mode, back, back+dur, dst.code, lat, lon)
	return n
}

// tripDest picks where a trip goes: mostly the home city and the province,
// sometimes other provinces' big cities.
func (g *gen) tripDest(dayTrip bool) place {
	r, c, w := g.r, g.c, g.w
	x := r.IntN(10)
	if dayTrip {
		x = 0
	}
	switch {
	case x < 3:
		if len(c.sameCity) > 0 {
			return w.counties[c.sameCity[r.IntN(len(c.sameCity))]].place
		}
		return c.place
	case x < 6:
		return w.counties[r.IntN(len(w.counties))].place
	case x < 9:
		return w.dests[r.IntN(len(w.dests))]
	}
	return w.all[r.IntN(len(w.all))]
}

// jitter moves a point up to km away; one record in ten leaves its point to
// the region's seat (0, 0 is written as null).
func (g *gen) jitter(lat, lon, km float64) (float64, float64) {
	r := g.r
	if r.IntN(10) == 0 {
		return 0, 0
	}
	return offset(lat, lon, km*math.Sqrt(r.Float64()), r.Float64()*2*math.Pi)
}

// loc appends a location record; the event id is left to the writer.
func (g *gen) loc(kind string, start, end int64, region string, lat, lon float64) {
	row := locationRow{PersonID: g.id, Kind: kind, StartTime: millis(start)}
	if end != noEnd {
		row.EndTime = g.b.i64.ptr(millis(end))
	}
	if region != "" {
		row.RegionCode = g.b.str.ptr(region)
	}
	if lat != 0 || lon != 0 {
		row.Lat, row.Lon = g.b.f64.ptr(lat), g.b.f64.ptr(lon)
	}
	g.b.locations = append(g.b.locations, row)
}

// rareIntervals gives a few normal persons a stay abroad or a custody, on
// days free of settlements (so never within a day of one).
func (g *gen) rareIntervals() {
	r := g.r
	x := r.IntN(1000)
	switch {
	case x < 4:
		t1, t2, ok := g.findRun(5 + r.IntN(26))
		if !ok || t2-t1 < 4 {
			return
		}
		start := at(t1, 8+r.IntN(6), r.IntN(60))
		end := at(t2, 14+r.IntN(8), r.IntN(60))
		if g.status == alive && r.IntN(6) == 0 && g.freeFrom(t1) {
			end = noEnd // still abroad at the end of the data
		}
		g.loc("abroad", start, end, "", 0, 0)
	case x < 5:
		t1, t2, ok := g.findRun(3 + r.IntN(38))
		if !ok || t2-t1 < 2 {
			return
		}
		lat, lon := g.jitter(g.c.lat, g.c.lon, 8)
		g.loc("custody", at(t1, 9+r.IntN(10), r.IntN(60)), at(t2, 9+r.IntN(8), r.IntN(60)), g.c.code, lat, lon)
	}
}

// floating gives about 3% of persons a residence registration elsewhere.
func (g *gen) floating() {
	r, w := g.r, g.w
	if r.IntN(100) >= 3 {
		return
	}
	var region string
	if r.IntN(10) < 6 {
		for {
			o := &w.counties[r.IntN(len(w.counties))]
			if o.city != g.c.city {
				region = o.code
				break
			}
		}
	} else {
		for {
			p := w.all[r.IntN(len(w.all))]
			if p.code[:2] != "62" {
				region = p.code
				break
			}
		}
	}
	from := -3000 + r.IntN(3300)
	row := floatingRow{PersonID: g.id, RegionCode: region, ValidFrom: int32(day2025 + from)}
	if r.IntN(10) >= 4 {
		row.ValidTo = g.b.i32.ptr(int32(day2025 + from + 180 + r.IntN(1620)))
	}
	g.b.floating = append(g.b.floating, row)
}
