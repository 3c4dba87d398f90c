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
	if opt.Out == "" || opt.Night < 1 {
		return NightSummary{}, errors.New("synth: a night needs an output directory and a night number (1 or more)")
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
		return NightSummary{}, err
	}
	w, err := prepareWorld(prov)
	if err != nil {
		return NightSummary{}, err
	}
	m := &nightMaker{opt: opt, prov: prov, w: w, n: &nightRows{},
		r:     rand.New(rand.NewPCG(mix(uint64(prov.Seed)^0x6e69676874), uint64(opt.Night))),
		today: lastDay + opt.Night, // the night's day, after the year
		b:     newBatch()}
	m.g = newGen(w, m.b)
	m.settleID = int64(nightBase + int64(opt.Night)*100_000_000)
	m.eventID = m.settleID
	// The order matters: each part draws from the one random source.
	if err := m.settlements(ctx); err != nil {
		return m.sum, err
	}
	m.locations()
	m.civilStatus()
	m.households()
	clinic := m.corrections()
	if err := m.write(clinic); err != nil {
		return m.sum, err
	}
	sort.Strings(m.sum.Files)
	return m.sum, nil
}

// nightMaker makes one night's rows from the year's province.
type nightMaker struct {
	opt               NightOptions
	prov              Options
	w                 *world
	r                 *rand.Rand
	today             int
	b                 *batch
	g                 *gen
	n                 *nightRows
	settleID, eventID int64
	sum               NightSummary
}

func (m *nightMaker) pick() int64 { return m.r.Int64N(m.w.persons) }

// draw makes person p again as the province made them, from the seed.
func (m *nightMaker) draw(p int64) {
	m.b.reset()
	m.g.b = m.b
	m.g.person(p)
}

func (m *nightMaker) settlements(ctx context.Context) error {
	// The day's settlements, of living persons, at their home institutions.
	want := m.prov.Settlements / m.opt.Share
	for tries := int64(0); int64(len(m.n.settlements)) < want && tries < 4*want+100; tries++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.draw(m.pick())
		if m.g.status != alive {
			continue
		}
		m.b.settlements = m.b.settlements[:0]
		typ := []string{outpatient, outpatient, pharmacy, pharmacy, pharmacy, inpatient}[m.r.IntN(6)]
		if typ == inpatient {
			stay := 2 + m.r.IntN(10)
			if m.g.stay.any(m.today-stay, m.today) {
				continue // no second bed at once
			}
			admit := at(m.today-stay, 7+m.r.IntN(10), m.r.IntN(60))
			discharge := at(m.today, 8, 0) + int64(m.r.IntN(180))*minute
			total, fund := m.g.amounts(inpatient)
			m.g.settle(m.g.inpatientHospital(), inpatient, admit, discharge, discharge+int64(10+m.r.IntN(230))*minute, total, fund)
		} else {
			m.g.visit(m.g.homeInst(typ), typ, m.today, 0)
		}
		for _, s := range m.b.settlements {
			m.settleID++
			s.SettlementID = string(appendID(nil, 'S', m.settleID))
			if s.VisitEnd != nil {
				end := *s.VisitEnd
				s.VisitEnd = &end
			}
			m.n.settlements = append(m.n.settlements, s)
		}
	}
	return nil
}

func (m *nightMaker) locations() {
	// The day's travel records: trips within the home city, which
	// contradict no visit.
	want := m.prov.Locations / m.opt.Share
	for tries := int64(0); int64(len(m.n.locations)) < want && tries < 4*want+100; tries++ {
		m.draw(m.pick())
		if m.g.status != alive {
			continue
		}
		c := m.g.c
		dst := c.place
		if len(c.sameCity) > 0 && m.r.IntN(2) == 0 {
			dst = m.w.counties[c.sameCity[m.r.IntN(len(c.sameCity))]].place
		}
		if regionsDistance(c.place, dst) > 60 {
			dst = c.place
		}
		m.eventID++
		region := dst.code
		m.n.locations = append(m.n.locations, locationRow{EventID: string(appendID(nil, 'E', m.eventID)), PersonID: m.g.id, Kind: "hotel",
			StartTime: millis(at(m.today, 19+m.r.IntN(4), m.r.IntN(60))), RegionCode: &region})
	}

}

func (m *nightMaker) civilStatus() {
	// Civil status: deaths recorded late — persons with settlements in the
	// year who died before their last ones — and the day's other updates.
	civil := m.prov.Persons / m.opt.Share
	late := max(3, m.prov.Persons/50_000)
	for tries := 0; m.sum.LateDeaths < int(late) && tries < int(late)*200; tries++ {
		m.draw(m.pick())
		if m.g.status != alive || m.g.scen >= 0 || len(m.b.settlements) < 2 {
			continue
		}
		starts := make([]int, len(m.b.settlements))
		for i, s := range m.b.settlements {
			starts[i] = dayOf(s.VisitStart/1000 - int64(day2025)*secPerDay)
		}
		sort.Ints(starts)
		death := starts[len(starts)-1] - 1 - m.r.IntN(3)
		if death <= starts[0] || death < 0 {
			continue
		}
		d := dateString(int64(death), true)
		m.n.civil = append(m.n.civil, civilStatusRow{PersonID: m.g.id, Status: deceased, DeathDate: &d, UpdatedAt: timeString(at(m.today, 9, 0), layoutCompact)})
		m.sum.LateDeaths++
	}
	for int64(len(m.n.civil)) < civil {
		m.draw(m.pick())
		if m.g.noCivil || m.g.status != alive {
			continue
		}
		m.n.civil = append(m.n.civil, civilStatusRow{PersonID: m.g.id, Status: alive, UpdatedAt: timeString(at(m.today, 8+m.r.IntN(10), m.r.IntN(60)), layoutCompact)})
	}

}

func (m *nightMaker) households() {
	// Household records updated (re-registered where they were), and a few
	// new floating-population registrations in the home city.
	for i := int64(0); i < m.prov.Persons/m.opt.Share; i++ {
		m.draw(m.pick())
		if m.g.noResident {
			continue
		}
		m.n.residents = append(m.n.residents, residentRow{PersonID: m.g.id, Name: m.g.name, HukouRegion: m.g.c.code, BirthDate: dateString(m.g.birth-day2025, false)})
	}
	for i := int64(0); i < max(1, m.prov.Persons*3/100/m.opt.Share); i++ {
		m.draw(m.pick())
		m.n.floating = append(m.n.floating, floatingRow{PersonID: m.g.id, RegionCode: m.g.c.code, ValidFrom: int32(day2025 + m.today)})
	}

}

func (m *nightMaker) corrections() []institutionRow {
	// Corrections: settlements of the year's first persons re-delivered
	// with another amount (their ids follow from the persons before them),
	// and one clinic's position corrected by a few hundred metres.
	corrections := max(1, m.prov.Settlements/m.opt.Share/1000)
	var before int64
	for p := int64(0); p < m.w.persons && int64(len(m.n.corrected)) < corrections; p++ {
		m.draw(p)
		for i, s := range m.b.settlements {
			if m.r.IntN(50) == 0 && int64(len(m.n.corrected)) < corrections {
				s.SettlementID = string(appendID(nil, 'S', before+int64(i)+1))
				if s.VisitEnd != nil {
					end := *s.VisitEnd
					s.VisitEnd = &end
				}
				s.FundAmount = cents(s.FundAmount * 0.9)
				m.n.corrected = append(m.n.corrected, s)
			}
		}
		before += int64(len(m.b.settlements))
	}
	m.sum.Corrections = len(m.n.corrected)
	var clinic []institutionRow
	for _, in := range m.w.insts {
		if in.kind == "clinic" {
			lat, lon := offset(in.elat, in.elon, 0.3, 1)
			clinic = append(clinic, institutionRow{InstitutionID: in.id, Name: in.name, Kind: in.kind, RegionCode: in.region, Lat: &lat, Lon: &lon})
			break
		}
	}

	return clinic
}

// write writes the night's rows, one delivery per feed.
func (m *nightMaker) write(clinic []institutionRow) error {
	m.sum.Rows = map[string]int64{}
	write := func(feed string, files []string, err error, rows int) error {
		if err != nil {
			return fmt.Errorf("synth: night %d: %s: %w", m.opt.Night, feed, err)
		}
		dir := filepath.Join(m.opt.Out, feed, m.opt.Delivery)
		if err := markComplete(dir); err != nil {
			return err
		}
		m.sum.Rows[feed] = int64(rows)
		for _, f := range append(files, filepath.Join(dir, "_SUCCESS")) {
			rel, _ := filepath.Rel(m.opt.Out, f)
			m.sum.Files = append(m.sum.Files, filepath.ToSlash(rel))
		}
		return nil
	}
	dir := func(feed string) (string, error) {
		d := filepath.Join(m.opt.Out, feed, m.opt.Delivery)
		return d, prepareDir(d)
	}
	settled := append(m.n.settlements, m.n.corrected...)
	steps := []struct {
		feed  string
		write func(string) ([]string, error)
		rows  int
	}{
		{feedInstitutions, func(d string) ([]string, error) { return writeAll(d, clinic) }, len(clinic)},
		{feedResidents, func(d string) ([]string, error) { return writeAll(d, m.n.residents) }, len(m.n.residents)},
		{feedCivil, func(d string) ([]string, error) { return writeAll(d, m.n.civil) }, len(m.n.civil)},
		{feedFloating, func(d string) ([]string, error) { return writeAll(d, m.n.floating) }, len(m.n.floating)},
		{feedLocations, func(d string) ([]string, error) { return writeAll(d, m.n.locations) }, len(m.n.locations)},
		{feedSettlements, func(d string) ([]string, error) { return writeAll(d, settled) }, len(settled)},
	}
	for _, st := range steps {
		d, err := dir(st.feed)
		if err != nil {
			return err
		}
		files, err := st.write(d)
		if err := write(st.feed, files, err, st.rows); err != nil {
			return err
		}
	}
	return nil
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
