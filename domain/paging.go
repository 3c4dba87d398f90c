package domain

// MaxPage is the largest page any list gives.
const MaxPage = 1000

// PageLimit is the page size every list uses: 100 when not given, at most MaxPage.
func PageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > MaxPage:
		return MaxPage
	}
	return n
}
