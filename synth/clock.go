// clock.go holds the generator's notion of time and the fast formatting of
// dates, timestamps and ID numbers that millions of rows need.
//
// All times are China Standard Time wall-clock times. Inside the generator a
// time is seconds since 2025-01-01 00:00 CST and a day is days since
// 2025-01-01; files get them as Parquet TIMESTAMP(MILLIS, isAdjustedToUTC=false)
// carrying the wall-clock value as is, or as strings.

package synth

const (
	secPerDay = 86400
	hour      = 3600
	minute    = 60
	// day2025 is 2025-01-01 in days since 1970-01-01.
	day2025 = 20089
	// lastDay is 2025-12-31, the last day of the settlement year.
	lastDay = 364
)

// at returns the time of a day at hh:mm.
func at(day int, hh, mm int) int64 {
	return int64(day)*secPerDay + int64(hh)*hour + int64(mm)*minute
}

// dayOf returns the day of a time (floor, also before 2025).
func dayOf(t int64) int {
	if t < 0 {
		return int((t - secPerDay + 1) / secPerDay)
	}
	return int(t / secPerDay)
}

// millis converts a time to the wall-clock milliseconds a local TIMESTAMP carries.
func millis(t int64) int64 { return (int64(day2025)*secPerDay + t) * 1000 }

// epochDays returns the days since 1970-01-01 of a civil date.
func epochDays(y, m, d int) int64 {
	// Howard Hinnant's days_from_civil.
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}

// civil returns the date of days since 1970-01-01.
func civil(z int64) (y, m, d int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if m > 12 {
		m -= 12
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

// appendDigits appends n zero-padded to width digits.
func appendDigits(b []byte, n int64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for w := 0; w < width || n > 0; w++ {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, buf[i:]...)
}

// appendDate appends a date (days since 2025-01-01) as YYYYMMDD, or with
// dashes as YYYY-MM-DD.
func appendDate(b []byte, day int64, dashes bool) []byte {
	y, m, d := civil(day + day2025)
	b = appendDigits(b, int64(y), 4)
	if dashes {
		b = append(b, '-')
	}
	b = appendDigits(b, int64(m), 2)
	if dashes {
		b = append(b, '-')
	}
	return appendDigits(b, int64(d), 2)
}

// Timestamp string layouts the contract accepts.
const (
	layoutSpace   = iota // YYYY-MM-DD HH:MM:SS
	layoutT              // YYYY-MM-DDTHH:MM:SS
	layoutCompact        // YYYYMMDDHHMMSS
)

// appendTime appends a time in one of the accepted string layouts.
func appendTime(b []byte, t int64, layout int) []byte {
	day := int64(dayOf(t))
	s := t - day*secPerDay
	b = appendDate(b, day, layout != layoutCompact)
	switch layout {
	case layoutSpace:
		b = append(b, ' ')
	case layoutT:
		b = append(b, 'T')
	}
	sep := layout != layoutCompact
	b = appendDigits(b, s/hour, 2)
	if sep {
		b = append(b, ':')
	}
	b = appendDigits(b, s%hour/minute, 2)
	if sep {
		b = append(b, ':')
	}
	return appendDigits(b, s%minute, 2)
}

func dateString(day int64, dashes bool) string {
	var buf [10]byte
	return string(appendDate(buf[:0], day, dashes))
}

func timeString(t int64, layout int) string {
	var buf [19]byte
	return string(appendTime(buf[:0], t, layout))
}

var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// makeID builds an 18-character ID number the way personid.Make does, from
// a region, a birth date (days since 1970-01-01) and a sequence, without
// going through time.Time; the tests hold the two equal.
func makeID(region string, birth int64, seq int) string {
	var b [18]byte
	copy(b[:6], region)
	y, m, d := civil(birth)
	appendDigits(b[6:6], int64(y), 4)
	appendDigits(b[10:10], int64(m), 2)
	appendDigits(b[12:12], int64(d), 2)
	appendDigits(b[14:14], int64(seq%1000), 3)
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(b[i]-'0') * idWeights[i]
	}
	b[17] = "10X98765432"[sum%11]
	return string(b[:])
}

// appendID appends a prefix letter and a 12-digit number (S000000000001).
func appendID(b []byte, letter byte, n int64) []byte {
	return appendDigits(append(b, letter), n, 12)
}
