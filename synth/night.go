// night.go writes a night's deliveries for a province Generate wrote: a day
// of the province's life after its year, as the feeds would bring it —
// the day's settlements, a day's share of the police records, deaths
// recorded late (whose earlier settlements become clues), and a few
// corrections — consistent with the province's persons, IDs and
// institutions, because every person is drawn again from the same seed.
//
//	OUT/<feed>/<delivery>/part-NNNNN.parquet, _SUCCESS   for settlements, civil_status,
//	                                                    residents, floating, locations, institutions
//
// Settlement and event ids of night n start at 900,000,000,000 + n·10⁸, far
// above any year's, so nights never collide with the year or each other.
package synth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"

	"collider/regions"
)

// NightOptions say which night to write for which province.
type NightOptions struct {
	// Province are the options the province was generated with (its Seed,
	// Persons, Settlements and Locations); its Out is ignored.
	Province Options
	Out      string // the inbox to write into
	Night    int    // 1 for the first day after the year, 2 for the next, …
	Delivery string // the deliveries' directory name; default night-NNNN
	// Share: the night brings 1/Share of the year's settlements and of
	// each police feed's records (default 365, a day of a year).
	Share int64
}

// NightSummary says what a night holds.
type NightSummary struct {
	Rows        map[string]int64 // rows per feed
	LateDeaths  int              // deaths of persons with earlier settlements after the death date
	Corrections int              // settlements of the year re-delivered with another amount
	Files       []string         // every file written, relative to Out, sorted
}

// nightBase is where night ids start.
const nightBase = 900_000_000_000

// Night writes the night's deliveries into opt.Out.
func Night(ctx context.Context, opt NightOptions) (NightSummary, error) {
	var sum NightSummary
	if opt.Out == "" || opt.Night < 1 {
		return sum, errors.New("synth: a night needs an output directory and a night number (1 or more)")
	}
	if opt.Share <= 0 {
		opt.Share = 365
	}
	if opt.Delivery == "" {
		opt.Delivery = fmt.Sprintf("night-%04d", opt.Night)
	}
	prov := opt.Province
	prov.Out = opt.Out
	prov, err := prov.withDefaults()
	if err != nil {
		return sum, err
	}
	w, err := prepareWorld(prov)
	if err != nil {
		return sum, err
	}
	r := rand.New(rand.NewPCG(mix(uint64(prov.Seed)^0x6e69676874), uint64(opt.Night)))
	today := lastDay + opt.Night // the night's day, after the year
	b := newBatch()
	g := newGen(w, b)
	n := &nightRows{}
	settleID := int64(nightBase + int64(opt.Night)*100_000_000)
	eventID := settleID
	pick := func() int64 { return r.Int64N(w.persons) }

	// A person as the province made them: drawn again from the seed.
	draw := func(p int64) {
		b.reset()
		g.b = b
		g.person(p)
	}

	// The day's settlements, of living persons, at their home institutions.
	want := prov.Settlements / opt.Share
	for tries := int64(0); int64(len(n.settlements)) < want && tries < 4*want+100; tries++ {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		draw(pick())
		if g.status != alive {
			continue
		}
		b.settlements = b.settlements[:0]
		typ := []string{outpatient, outpatient, pharmacy, pharmacy, pharmacy, inpatient}[r.IntN(6)]
		if typ == inpatient {
			stay := 2 + r.IntN(10)
			if g.stay.any(today-stay, today) {
				continue // no second bed at once
			}
			admit := at(today-stay, 7+r.IntN(10), r.IntN(60))
			discharge := at(today, 8, 0) + int64(r.IntN(180))*minute
			total, fund := g.amounts(inpatient)
			g.settle(g.inpatientHospital(), inpatient, admit, discharge, discharge+int64(10+r.IntN(230))*minute, total, fund)
		} else {
			g.visit(g.homeInst(typ), typ, today, 0)
		}
		for _, s := range b.settlements {
			settleID++
			s.SettlementID = string(appendID(nil, 'S', settleID))
			if s.VisitEnd != nil {
				end := *s.VisitEnd
				s.VisitEnd = &end
			}
			n.settlements = append(n.settlements, s)
		}
	}

	// The day's travel records: trips within the home city, which
	// contradict no visit.
	want = prov.Locations / opt.Share
	for tries := int64(0); int64(len(n.locations)) < want && tries < 4*want+100; tries++ {
		draw(pick())
		if g.status != alive {
			continue
		}
		c := g.c
		dst := c.place
		if len(c.sameCity) > 0 && r.IntN(2) == 0 {
			dst = w.counties[c.sameCity[r.IntN(len(c.sameCity))]].place
		}
		if regionsDistance(c.place, dst) > 60 {
			dst = c.place
		}
		eventID++
		region := dst.code
		n.locations = append(n.locations, locationRow{EventID: string(appendID(nil, 'E', eventID)), PersonID: g.id, Kind: "hotel",
			StartTime: millis(at(today, 19+r.IntN(4), r.IntN(60))), RegionCode: &region})
	}

	// Civil status: deaths recorded late — persons with settlements in the
	// year who died before their last ones — and the day's other updates.
	civil := prov.Persons / opt.Share
	late := max(3, prov.Persons/50_000)
	for tries := 0; sum.LateDeaths < int(late) && tries < int(late)*200; tries++ {
		draw(pick())
		if g.status != alive || g.scen >= 0 || len(b.settlements) < 2 {
			continue
		}
		starts := make([]int, len(b.settlements))
		for i, s := range b.settlements {
			starts[i] = dayOf(s.VisitStart/1000 - int64(day2025)*secPerDay)
		}
		sort.Ints(starts)
		death := starts[len(starts)-1] - 1 - r.IntN(3)
		if death <= starts[0] || death < 0 {
			continue
		}
		d := dateString(int64(death), true)
		n.civil = append(n.civil, civilStatusRow{PersonID: g.id, Status: deceased, DeathDate: &d, UpdatedAt: timeString(at(today, 9, 0), layoutCompact)})
		sum.LateDeaths++
	}
	for int64(len(n.civil)) < civil {
		draw(pick())
		if g.noCivil || g.status != alive {
			continue
		}
		n.civil = append(n.civil, civilStatusRow{PersonID: g.id, Status: alive, UpdatedAt: timeString(at(today, 8+r.IntN(10), r.IntN(60)), layoutCompact)})
	}

	// Household records updated (re-registered where they were), and a few
	// new floating-population registrations in the home city.
	for i := int64(0); i < prov.Persons/opt.Share; i++ {
		draw(pick())
		if g.noResident {
			continue
		}
		n.residents = append(n.residents, residentRow{PersonID: g.id, Name: g.name, HukouRegion: g.c.code, BirthDate: dateString(g.birth-day2025, false)})
	}
	for i := int64(0); i < max(1, prov.Persons*3/100/opt.Share); i++ {
		draw(pick())
		n.floating = append(n.floating, floatingRow{PersonID: g.id, RegionCode: g.c.code, ValidFrom: int32(day2025 + today)})
	}

	// Corrections: settlements of the year's first persons re-delivered
	// with another amount (their ids follow from the persons before them),
	// and one clinic's position corrected by a few hundred metres.
	corrections := max(1, prov.Settlements/opt.Share/1000)
	var before int64
	for p := int64(0); p < w.persons && int64(len(n.corrected)) < corrections; p++ {
		draw(p)
		for i, s := range b.settlements {
			if r.IntN(50) == 0 && int64(len(n.corrected)) < corrections {
				s.SettlementID = string(appendID(nil, 'S', before+int64(i)+1))
				if s.VisitEnd != nil {
					end := *s.VisitEnd
					s.VisitEnd = &end
				}
				s.FundAmount = cents(s.FundAmount * 0.9)
				n.corrected = append(n.corrected, s)
			}
		}
		before += int64(len(b.settlements))
	}
	sum.Corrections = len(n.corrected)
	var clinic []institutionRow
	for _, in := range w.insts {
		if in.kind == "clinic" {
			lat, lon := offset(in.elat, in.elon, 0.3, 1)
			clinic = append(clinic, institutionRow{InstitutionID: in.id, Name: in.name, Kind: in.kind, RegionCode: in.region, Lat: &lat, Lon: &lon})
			break
		}
	}

	// Write them, one delivery per feed.
	sum.Rows = map[string]int64{}
	write := func(feed string, files []string, err error, rows int) error {
		if err != nil {
			return fmt.Errorf("synth: night %d: %s: %w", opt.Night, feed, err)
		}
		dir := filepath.Join(opt.Out, feed, opt.Delivery)
		if err := markComplete(dir); err != nil {
			return err
		}
		sum.Rows[feed] = int64(rows)
		for _, f := range append(files, filepath.Join(dir, "_SUCCESS")) {
			rel, _ := filepath.Rel(opt.Out, f)
			sum.Files = append(sum.Files, filepath.ToSlash(rel))
		}
		return nil
	}
	dir := func(feed string) (string, error) {
		d := filepath.Join(opt.Out, feed, opt.Delivery)
		return d, prepareDir(d)
	}
	settled := append(n.settlements, n.corrected...)
	steps := []struct {
		feed  string
		write func(string) ([]string, error)
		rows  int
	}{
		{feedInstitutions, func(d string) ([]string, error) { return writeAll(d, clinic) }, len(clinic)},
		{feedResidents, func(d string) ([]string, error) { return writeAll(d, n.residents) }, len(n.residents)},
		{feedCivil, func(d string) ([]string, error) { return writeAll(d, n.civil) }, len(n.civil)},
		{feedFloating, func(d string) ([]string, error) { return writeAll(d, n.floating) }, len(n.floating)},
		{feedLocations, func(d string) ([]string, error) { return writeAll(d, n.locations) }, len(n.locations)},
		{feedSettlements, func(d string) ([]string, error) { return writeAll(d, settled) }, len(settled)},
	}
	for _, st := range steps {
		d, err := dir(st.feed)
		if err != nil {
			return sum, err
		}
		files, err := st.write(d)
		if err := write(st.feed, files, err, st.rows); err != nil {
			return sum, err
		}
	}
	sort.Strings(sum.Files)
	return sum, nil
}

// nightRows are a night's rows by feed.
type nightRows struct {
	settlements, corrected []settlementRow
	locations              []locationRow
	civil                  []civilStatusRow
	residents              []residentRow
	floating               []floatingRow
}

func regionsDistance(a, b place) float64 {
	return regions.DistanceKm(a.lat, a.lon, b.lat, b.lon)
}
