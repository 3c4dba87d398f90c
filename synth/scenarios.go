// scenarios.go plants the cases the models must find, and the near misses
// they must leave alone, into a person's year. Each scenario is written so
// that, with the models' default parameters, exactly its own model flags its
// planted settlements (with comfortable margins) and no model flags a near
// miss; the person's other data is kept away from it by a guard zone of
// seven days in the calendar.
//
// Every distance is regions.DistanceKm between the institution's effective
// point (its lat/lon, else its region's seat) and the record's point (its
// lat/lon, else its region's seat), as the models measure it.

package synth

import (
	"math"

	"collider/regions"
)

// scenario is one kind of planted case or near miss.
type scenario struct {
	name   string
	model  string // the model that must flag it, or that a near miss is aimed at
	flag   bool   // true: planted (expect flag); false: near miss (expect clear)
	reason string // reason code of the flagged settlements ("" for near misses)
	plant  func(*gen) bool
}

// scenarios are handed out to scenario persons in turn. A scenario that
// does not fit a person (no suitable place near their county) passes the
// person on to the next one. (Set in init: the planting code reads it back.)
var scenarios []scenario

func init() { scenarios = scenarioList() }

func scenarioList() []scenario {
	return []scenario{
		{"after_death", "deceased_claims", true, "after_death", (*gen).plantAfterDeath},
		{"hukou_cancelled", "deceased_claims", true, "hukou_cancelled", (*gen).plantCancelled},
		{"near_stay_across_death", "deceased_claims", false, "", (*gen).plantStayAcrossDeath},
		{"near_purchase_on_death_date", "deceased_claims", false, "", (*gen).plantPurchaseOnDeathDate},
		{"near_visit_on_cancel_date", "deceased_claims", false, "", (*gen).plantVisitOnCancelDate},
		{"in_custody_outpatient", "impossible_location", true, "in_custody", (*gen).plantCustodyOutpatient},
		{"in_custody_inpatient", "impossible_location", true, "in_custody", (*gen).plantCustodyInpatient},
		{"near_custody_released_day_before", "impossible_location", false, "", (*gen).plantCustodyReleased},
		{"abroad_open", "impossible_location", true, "abroad", (*gen).plantAbroadOpen},
		{"abroad_closed", "impossible_location", true, "abroad", (*gen).plantAbroadClosed},
		{"near_abroad_returned_day_before", "impossible_location", false, "", (*gen).plantAbroadReturned},
		{"away_during_stay", "impossible_location", true, "away_during_stay", (*gen).plantAwayDuringStay},
		{"near_hotel_30km_during_stay", "impossible_location", false, "", (*gen).plantHotel30km},
		{"near_far_hotel_in_margin", "impossible_location", false, "", (*gen).plantFarHotelInMargin},
		{"unreachable", "impossible_location", true, "unreachable", (*gen).plantUnreachable},
		{"near_speed_270kmh", "impossible_location", false, "", (*gen).plantSpeed270},
		{"near_far_record_13h", "impossible_location", false, "", (*gen).plantFar13h},
		{"never_there_repeat", "phantom_purchases", true, "never_there", (*gen).plantNeverThereRepeat},
		{"never_there_single", "phantom_purchases", true, "never_there", (*gen).plantNeverThereSingle},
		{"near_floating_registration", "phantom_purchases", false, "", (*gen).plantFloatingThere},
		{"near_hotel_day_before", "phantom_purchases", false, "", (*gen).plantHotelDayBefore},
		{"near_other_city_under_100km", "phantom_purchases", false, "", (*gen).plantOtherCityNear},
		{"overlap", "overlapping_stays", true, "overlap", (*gen).plantOverlap},
		{"near_overlap_20h", "overlapping_stays", false, "", (*gen).plantOverlap20h},
		{"near_back_to_back", "overlapping_stays", false, "", (*gen).plantBackToBack},
		{"unknown_person", "unknown_identity", true, "unknown_person", (*gen).plantUnknown},
		{"near_civil_status_only", "unknown_identity", false, "", (*gen).plantCivilOnly},
	}
}

// guardDays keeps a person's other settlements and travel this far from a
// planted event.
const guardDays = 7

func (g *gen) day(lo, hi int) int { return lo + g.r.IntN(hi-lo+1) }

// plantSettle appends a planted settlement and its truth row.
func (g *gen) plantSettle(in int32, typ string, start, end, settled int64, reason string) int32 {
	total, fund := g.amounts(typ)
	local := g.settle(in, typ, start, end, settled, total, fund)
	g.blocked.setRange(dayOf(start)-guardDays, dayOf(settled)+guardDays)
	if g.truthAll == 0 { // otherwise settle has written it
		g.b.truth = append(g.b.truth, truthRow{local: local, scenario: uint8(g.scen), flag: scenarios[g.scen].flag, reason: reason})
	}
	return local
}

// plantVisit plants an outpatient visit or a purchase on a day.
func (g *gen) plantVisit(in int32, typ string, day, hh int, reason string) {
	start := at(day, hh, g.r.IntN(60))
	settled := start + int64(5+g.r.IntN(40))*minute
	if typ == pharmacy {
		settled = start + int64(g.r.IntN(3))*minute
	}
	g.plantSettle(in, typ, start, noEnd, settled, reason)
}

// plantLoc appends a planted location record and guards its days.
func (g *gen) plantLoc(kind string, start, end int64, region string, lat, lon float64) {
	g.loc(kind, start, end, region, lat, lon)
	switch {
	case kind != "custody" && kind != "abroad":
		g.blocked.setRange(dayOf(start)-guardDays, dayOf(start)+guardDays)
	case end == noEnd:
		g.blocked.setRange(dayOf(start)-3, daysetLen)
	default:
		g.blocked.setRange(dayOf(start)-3, dayOf(end)+3)
	}
}

func (g *gen) visitType() string {
	if g.r.IntN(2) == 0 {
		return pharmacy
	}
	return outpatient
}

func (g *gen) point(in int32) (float64, float64) {
	inst := &g.w.insts[in]
	return inst.elat, inst.elon
}

// farDest finds a big city of another province more than minKm from an
// institution's point.
func (g *gen) farDest(in int32, minKm float64) (place, bool) {
	return g.destBetween(in, minKm, math.Inf(1))
}

// destBetween finds a place between lo and hi km from an institution's
// point: a big city if one fits, else any county seat.
func (g *gen) destBetween(in int32, lo, hi float64) (place, bool) {
	lat, lon := g.point(in)
	fits := func(p place) bool {
		d := regions.DistanceKm(lat, lon, p.lat, p.lon)
		return d > lo && d < hi
	}
	dests := g.w.dests
	s := g.r.IntN(len(dests))
	for i := range dests {
		if p := dests[(s+i)%len(dests)]; fits(p) {
			return p, true
		}
	}
	for try := 0; try < 256; try++ {
		if p := g.w.all[g.r.IntN(len(g.w.all))]; fits(p) {
			return p, true
		}
	}
	return place{}, false
}

// farPharmacy finds a pharmacy of another Gansu city more than 320 km from
// the person's hukou seat.
func (g *gen) farPharmacy() (int32, bool) {
	return g.otherCityPharmacy(g.c.farCounty, func(d float64) bool { return d > 320 })
}

// nearPharmacy finds a pharmacy of another Gansu city less than 88 km from
// the person's hukou seat.
func (g *gen) nearPharmacy() (int32, bool) {
	return g.otherCityPharmacy(g.c.nearOther, func(d float64) bool { return d < 88 })
}

func (g *gen) otherCityPharmacy(counties []int32, ok func(float64) bool) (int32, bool) {
	if len(counties) == 0 {
		return 0, false
	}
	for try := 0; try < 16; try++ {
		o := &g.w.counties[counties[g.r.IntN(len(counties))]]
		in := o.pharmacies[g.r.IntN(len(o.pharmacies))]
		lat, lon := g.point(in)
		if o.city != g.c.city && ok(regions.DistanceKm(g.c.lat, g.c.lon, lat, lon)) {
			return in, true
		}
	}
	return 0, false
}

// --- deceased_claims ---

func (g *gen) plantAfterDeath() bool {
	lo := max(-120, int(g.birth-day2025)+30)
	if lo > 300 {
		return false
	}
	death := g.day(lo, 300)
	g.setDeceased(death)
	dlo, dhi := max(death+5, 0), min(death+200, lastDay)
	for i, n := 0, 1+g.r.IntN(3); i < n; i++ {
		d := g.day(dlo, dhi)
		if g.used.has(d) {
			continue
		}
		typ := g.visitType()
		g.plantVisit(g.homeInst(typ), typ, d, 9+g.r.IntN(8), "after_death")
	}
	return true
}

func (g *gen) plantCancelled() bool {
	u := g.day(30, 300)
	g.setCancelled(at(u, 9+g.r.IntN(8), g.r.IntN(60)))
	for i, n := 0, 1+g.r.IntN(2); i < n; i++ {
		d := g.day(u+14, u+60)
		if g.used.has(d) {
			continue
		}
		typ := g.visitType()
		g.plantVisit(g.homeInst(typ), typ, d, 9+g.r.IntN(8), "hukou_cancelled")
	}
	return true
}

// plantStayAcrossDeath: admitted three days before death, discharged and
// settled two days after it. Only the admission date counts.
func (g *gen) plantStayAcrossDeath() bool {
	death := g.day(30, 330)
	g.setDeceased(death)
	h := g.homeInst(inpatient)
	admit := at(death-3, 10+g.r.IntN(6), g.r.IntN(60))
	discharge := at(death+2, 9, g.r.IntN(60))
	g.plantSettle(h, inpatient, admit, discharge, discharge+int64(30+g.r.IntN(90))*minute, "")
	return true
}

// plantPurchaseOnDeathDate: a purchase on the death date itself; only dates
// later than death_date + grace_days (0) are flagged.
func (g *gen) plantPurchaseOnDeathDate() bool {
	death := g.day(30, lastDay)
	g.setDeceased(death)
	g.plantVisit(g.homeInst(pharmacy), pharmacy, death, 8+g.r.IntN(4), "")
	return true
}

// plantVisitOnCancelDate: a visit in the morning of the day the hukou is
// cancelled in the afternoon.
func (g *gen) plantVisitOnCancelDate() bool {
	u := g.day(30, lastDay)
	g.setCancelled(at(u, 16+g.r.IntN(2), g.r.IntN(60)))
	g.plantVisit(g.homeInst(outpatient), outpatient, u, 9+g.r.IntN(2), "")
	return true
}

// --- impossible_location: custody and abroad ---

func (g *gen) custody(t1, t2 int64) {
	lat, lon := g.jitter(g.c.lat, g.c.lon, 8)
	g.plantLoc("custody", t1, t2, g.c.code, lat, lon)
}

func (g *gen) plantCustodyOutpatient() bool {
	dur := 10 + g.r.IntN(51)
	x := g.day(20, lastDay-dur-8)
	g.custody(at(x, 10+g.r.IntN(8), g.r.IntN(60)), at(x+dur, 9+g.r.IntN(8), g.r.IntN(60)))
	g.plantVisit(g.homeInst(outpatient), outpatient, g.day(x+2, x+dur-2), 9+g.r.IntN(7), "in_custody")
	return true
}

// plantCustodyInpatient: taken into custody on the third day of a stay that
// goes on being billed (挂床).
func (g *gen) plantCustodyInpatient() bool {
	l := 5 + g.r.IntN(8)
	a := g.day(20, 300)
	admit := at(a, 9+g.r.IntN(3), g.r.IntN(60))
	discharge := at(a+l, 9, g.r.IntN(60))
	t1 := at(a+2, 15, g.r.IntN(60))
	g.custody(t1, t1+int64(15+g.r.IntN(26))*secPerDay)
	g.plantSettle(g.homeInst(inpatient), inpatient, admit, discharge, discharge+int64(30+g.r.IntN(90))*minute, "in_custody")
	return true
}

// plantCustodyReleased: released at 15–17h the day before a morning visit.
func (g *gen) plantCustodyReleased() bool {
	x := g.day(30, 350)
	g.custody(at(x-5-g.r.IntN(11), 10, g.r.IntN(60)), at(x-1, 15+g.r.IntN(2), g.r.IntN(60)))
	g.plantVisit(g.homeInst(outpatient), outpatient, x, 9+g.r.IntN(2), "")
	return true
}

// plantAbroadOpen: left the country weeks before a purchase and not back.
func (g *gen) plantAbroadOpen() bool {
	x := g.day(60, 330)
	g.winHi = min(g.winHi, x-4)
	g.locHi = min(g.locHi, x-4)
	g.plantLoc("abroad", at(x, 8+g.r.IntN(5), g.r.IntN(60)), noEnd, "", 0, 0)
	d := g.day(x+14, min(x+40, lastDay))
	g.plantVisit(g.homeInst(pharmacy), pharmacy, d, 9+g.r.IntN(10), "abroad")
	return true
}

func (g *gen) plantAbroadClosed() bool {
	dur := 15 + g.r.IntN(31)
	x := g.day(20, lastDay-dur-8)
	g.plantLoc("abroad", at(x, 8+g.r.IntN(6), g.r.IntN(60)), at(x+dur, 14+g.r.IntN(8), g.r.IntN(60)), "", 0, 0)
	typ := g.visitType()
	g.plantVisit(g.homeInst(typ), typ, g.day(x+3, x+dur-3), 9+g.r.IntN(8), "abroad")
	return true
}

// plantAbroadReturned: back at 19–22h the evening before a morning visit.
func (g *gen) plantAbroadReturned() bool {
	x := g.day(40, 350)
	g.plantLoc("abroad", at(x-10-g.r.IntN(20), 8+g.r.IntN(6), g.r.IntN(60)), at(x-1, 19+g.r.IntN(3), g.r.IntN(60)), "", 0, 0)
	typ := g.visitType()
	g.plantVisit(g.homeInst(typ), typ, x, 9+g.r.IntN(3), "")
	return true
}

// --- impossible_location: away during a stay, unreachable ---

// plantAwayDuringStay: a ten-day stay at a home hospital and, in its middle,
// a hotel check-in in a big city of another province (> 450 km).
func (g *gen) plantAwayDuringStay() bool {
	h := g.homeInst(inpatient)
	dst, ok := g.farDest(h, 450)
	if !ok {
		return false
	}
	a := g.day(20, 340)
	admit := at(a, 9+g.r.IntN(2), g.r.IntN(60))
	discharge := at(a+10, 9, g.r.IntN(60))
	hd := a + 4 + g.r.IntN(3)
	lat, lon := g.jitter(dst.lat, dst.lon, 5)
	g.plantLoc("hotel", at(hd, 19+g.r.IntN(3), g.r.IntN(60)), at(hd+1, 10, 0), dst.code, lat, lon)
	g.plantSettle(h, inpatient, admit, discharge, discharge+int64(30+g.r.IntN(90))*minute, "away_during_stay")
	return true
}

// plantHotel30km: a hotel about 30 km from the hospital in the middle of a
// stay: visiting family, not far enough to matter (min_distance_km 100).
func (g *gen) plantHotel30km() bool {
	h := g.homeInst(inpatient)
	hlat, hlon := g.point(h)
	lat, lon := offset(hlat, hlon, 30, g.r.Float64()*2*math.Pi)
	if d := regions.DistanceKm(hlat, hlon, lat, lon); d < 25 || d > 35 {
		return false
	}
	l := 7 + g.r.IntN(6)
	a := g.day(20, 340)
	admit := at(a, 9+g.r.IntN(2), g.r.IntN(60))
	discharge := at(a+l, 9, g.r.IntN(60))
	g.plantLoc("hotel", at(a+l/2, 19+g.r.IntN(3), g.r.IntN(60)), at(a+l/2+1, 9, 0), g.c.code, lat, lon)
	g.plantSettle(h, inpatient, admit, discharge, discharge+int64(30+g.r.IntN(90))*minute, "")
	return true
}

// plantFarHotelInMargin: a far hotel 3h–3h29 after admission, inside
// margin_hours (6) where the models give the benefit of the doubt. It is
// 400–800 km away, so that even a model that wrongly applied the speed rule
// to admissions would find it reachable (< 300 km/h).
func (g *gen) plantFarHotelInMargin() bool {
	h := g.homeInst(inpatient)
	dst, ok := g.destBetween(h, 400, 800)
	if !ok {
		return false
	}
	l := 5 + g.r.IntN(6)
	a := g.day(20, 340)
	admit := at(a, 9+g.r.IntN(3), g.r.IntN(60))
	discharge := at(a+l, 9, g.r.IntN(60))
	lat, lon := g.jitter(dst.lat, dst.lon, 5)
	g.plantLoc("hotel", admit+3*hour+int64(g.r.IntN(30))*minute, at(a+1, 10, 0), dst.code, lat, lon)
	g.plantSettle(h, inpatient, admit, discharge, discharge+int64(30+g.r.IntN(90))*minute, "")
	return true
}

// plantUnreachable: a visit at 10h at home and, two hours later, a flight
// departing from a city more than 1,100 km away (> 550 km/h).
func (g *gen) plantUnreachable() bool {
	typ := g.visitType()
	in := g.homeInst(typ)
	dst, ok := g.farDest(in, 1100)
	if !ok {
		return false
	}
	x := g.day(20, 344)
	start := at(x, 10, g.r.IntN(30))
	settled := start + int64(5+g.r.IntN(20))*minute
	lat, lon := g.jitter(dst.lat, dst.lon, 10)
	g.plantLoc("flight", start+2*hour, start+4*hour+30*minute, dst.code, lat, lon)
	g.plantSettle(in, typ, start, noEnd, settled, "unreachable")
	return true
}

// plantSpeed270: a rail departure exactly two hours after an outpatient
// visit from a seat 515–570 km from the institution: 257–285 km/h, under
// max_speed_kmh (300) whether hours are exact, whole minutes or whole hours.
func (g *gen) plantSpeed270() bool {
	in := g.homeInst(outpatient)
	lat, lon := g.point(in)
	band := g.c.band540
	if len(band) == 0 {
		return false
	}
	var dst place
	found := false
	for try := 0; try < 8 && !found; try++ {
		dst = g.w.all[band[g.r.IntN(len(band))]]
		d := regions.DistanceKm(lat, lon, dst.lat, dst.lon)
		found = d >= 515 && d <= 570
	}
	if !found {
		return false
	}
	x := g.day(20, 344)
	start := at(x, 9+g.r.IntN(2), g.r.IntN(60))
	g.plantLoc("rail", start+2*hour, start+4*hour+20*minute, dst.code, dst.lat, dst.lon)
	g.plantSettle(in, outpatient, start, noEnd, start+int64(5+g.r.IntN(40))*minute, "")
	return true
}

// plantFar13h: a flight from more than 1,100 km away 13 hours after the
// visit, outside window_hours (12).
func (g *gen) plantFar13h() bool {
	typ := g.visitType()
	in := g.homeInst(typ)
	dst, ok := g.farDest(in, 1100)
	if !ok {
		return false
	}
	x := g.day(20, 344)
	start := at(x, 9, g.r.IntN(60))
	lat, lon := g.jitter(dst.lat, dst.lon, 10)
	g.plantLoc("flight", start+13*hour, start+15*hour, dst.code, lat, lon)
	g.plantSettle(in, typ, start, noEnd, start+int64(5+g.r.IntN(20))*minute, "")
	return true
}

// --- phantom_purchases ---

// plantNeverThereRepeat: two or three purchases within 90 days at one
// pharmacy of a far city the person never went to (severity high).
func (g *gen) plantNeverThereRepeat() bool {
	ph, ok := g.farPharmacy()
	if !ok {
		return false
	}
	x := g.day(20, 269)
	days := []int{x, x + 15 + g.r.IntN(26)}
	if g.r.IntN(2) == 0 {
		days = append(days, x+45+g.r.IntN(36))
	}
	for _, d := range days {
		g.plantVisit(ph, pharmacy, d, 9+g.r.IntN(11), "never_there")
	}
	return true
}

func (g *gen) plantNeverThereSingle() bool {
	ph, ok := g.farPharmacy()
	if !ok {
		return false
	}
	g.plantVisit(ph, pharmacy, g.day(20, 344), 9+g.r.IntN(11), "never_there")
	return true
}

// plantFloatingThere: a far purchase in the city where the person holds a
// residence registration valid that day.
func (g *gen) plantFloatingThere() bool {
	ph, ok := g.farPharmacy()
	if !ok {
		return false
	}
	x := g.day(20, 344)
	from := x - 100 - g.r.IntN(600)
	row := floatingRow{PersonID: g.id, RegionCode: g.w.insts[ph].region, ValidFrom: int32(day2025 + from)}
	if g.r.IntN(2) == 0 {
		row.ValidTo = g.b.i32.ptr(int32(day2025 + x + 30 + g.r.IntN(370)))
	}
	g.b.floating = append(g.b.floating, row)
	g.plantVisit(ph, pharmacy, x, 9+g.r.IntN(11), "")
	return true
}

// plantHotelDayBefore: a far purchase the morning after a hotel check-in in
// the pharmacy's county (presence_days 3). The hotel is within a few km of
// the pharmacy and 13h+ before it, so nothing else applies either.
func (g *gen) plantHotelDayBefore() bool {
	ph, ok := g.farPharmacy()
	if !ok {
		return false
	}
	x := g.day(20, 344)
	plat, plon := g.point(ph)
	lat, lon := g.jitter(plat, plon, 3)
	g.plantLoc("hotel", at(x-1, 20+g.r.IntN(2), g.r.IntN(60)), at(x, 8, g.r.IntN(30)), g.w.insts[ph].region, lat, lon)
	g.plantVisit(ph, pharmacy, x, 11+g.r.IntN(3), "")
	return true
}

// plantOtherCityNear: a purchase in a neighbouring city less than 100 km
// from the hukou seat (min_distance_km).
func (g *gen) plantOtherCityNear() bool {
	ph, ok := g.nearPharmacy()
	if !ok {
		return false
	}
	g.plantVisit(ph, pharmacy, g.day(20, 344), 9+g.r.IntN(11), "")
	return true
}

// --- overlapping_stays ---

// twoHospitals picks two different hospitals of the home county.
func (g *gen) twoHospitals() (int32, int32) {
	hs := g.c.hospitals
	i := g.r.IntN(len(hs))
	j := (i + 1 + g.r.IntN(len(hs)-1)) % len(hs)
	return hs[i], hs[j]
}

// plantOverlap: two stays at two hospitals overlapping by 3–5 days
// (minus a few hours).
func (g *gen) plantOverlap() bool {
	h1, h2 := g.twoHospitals()
	l1, ov, l2 := 8+g.r.IntN(5), 3+g.r.IntN(3), 5+g.r.IntN(6)
	a := g.day(20, 320)
	d1 := at(a+l1, 10, g.r.IntN(60))
	a2 := at(a+l1-ov, 14, g.r.IntN(60))
	d2 := at(a+l1-ov+l2, 10, g.r.IntN(60))
	g.plantSettle(h1, inpatient, at(a, 9, g.r.IntN(60)), d1, d1+int64(30+g.r.IntN(90))*minute, "overlap")
	g.plantSettle(h2, inpatient, a2, d2, d2+int64(30+g.r.IntN(90))*minute, "overlap")
	return true
}

// plantOverlap20h: discharged at 14:00 the day after the second admission
// at 18:00: an overlap of exactly 20 hours, under overlap_hours (24).
func (g *gen) plantOverlap20h() bool {
	h1, h2 := g.twoHospitals()
	l1, l2 := 5+g.r.IntN(6), 4+g.r.IntN(6)
	a := g.day(20, 330)
	d1 := at(a+l1, 14, 0)
	a2 := at(a+l1-1, 18, 0)
	d2 := at(a+l1-1+l2, 10, g.r.IntN(60))
	g.plantSettle(h1, inpatient, at(a, 9, g.r.IntN(60)), d1, d1+int64(30+g.r.IntN(90))*minute, "")
	g.plantSettle(h2, inpatient, a2, d2, d2+int64(30+g.r.IntN(90))*minute, "")
	return true
}

// plantBackToBack: a transfer, discharged at 09:00 and admitted elsewhere at
// 14:00 the same day.
func (g *gen) plantBackToBack() bool {
	h1, h2 := g.twoHospitals()
	l1, l2 := 5+g.r.IntN(6), 4+g.r.IntN(6)
	a := g.day(20, 330)
	e := a + l1
	g.plantSettle(h1, inpatient, at(a, 9, g.r.IntN(60)), at(e, 9, 0), at(e, 9, 30), "")
	d2 := at(e+l2, 10, g.r.IntN(60))
	g.plantSettle(h2, inpatient, at(e, 14, 0), d2, d2+int64(30+g.r.IntN(90))*minute, "")
	return true
}

// --- unknown_identity ---

// plantUnknown: a valid ID that neither police feed knows. All of the
// person's settlements are flagged; no purchases, so that no other model
// has to decide what a missing hukou means.
func (g *gen) plantUnknown() bool {
	g.noResident, g.noCivil, g.noTravel, g.noPharmacy, g.truthAll = true, true, true, true, 1
	g.plantVisit(g.homeInst(outpatient), outpatient, g.day(10, 354), 9+g.r.IntN(8), "unknown_person")
	return true
}

// plantCivilOnly: known to civil status (alive) but with no hukou record.
func (g *gen) plantCivilOnly() bool {
	g.noResident, g.noTravel, g.noPharmacy, g.truthAll = true, true, true, -1
	g.plantVisit(g.homeInst(outpatient), outpatient, g.day(10, 354), 9+g.r.IntN(8), "")
	return true
}
