// Package personid normalizes citizen identity numbers (公民身份号码, GB 11643-1999),
// masks them for readers who may not see them, and makes the keyed tokens that
// stand for people in the modelers' sandbox (token.go).
//
// The loader does the same normalization in SQL over whole files (the
// person_id_* macros of sql/0005_feeds.sql); this Go version serves the
// generator and tests, and a loader test keeps the two in step.
package personid

import (
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalid is returned for anything that is not a valid 15- or 18-character ID.
var ErrInvalid = errors.New("invalid person id")

var weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const checkChars = "10X98765432"

// CheckChar returns the check character for the first 17 digits of an ID.
func CheckChar(first17 string) (byte, error) {
	if len(first17) != 17 {
		return 0, ErrInvalid
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := first17[i]
		if c < '0' || c > '9' {
			return 0, ErrInvalid
		}
		sum += int(c-'0') * weights[i]
	}
	return checkChars[sum%11], nil
}

// Normalize trims spaces, upper-cases x, converts a 15-digit legacy ID to 18
// characters and checks the check character and the birth date. It returns the
// 18-character form or ErrInvalid.
func Normalize(s string) (string, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	switch len(s) {
	case 15:
		for i := 0; i < 15; i++ {
			if s[i] < '0' || s[i] > '9' {
				return "", ErrInvalid
			}
		}
		first17 := s[:6] + "19" + s[6:]
		c, err := CheckChar(first17)
		if err != nil {
			return "", err
		}
		s = first17 + string(c)
	case 18:
		c, err := CheckChar(s[:17])
		if err != nil || c != s[17] {
			return "", ErrInvalid
		}
	default:
		return "", ErrInvalid
	}
	if _, err := time.Parse("20060102", s[6:14]); err != nil {
		return "", ErrInvalid
	}
	return s, nil
}

// Make builds a valid 18-character ID from a 6-digit region, a birth date and
// a 3-digit sequence (odd for men, even for women).
func Make(region string, birth time.Time, seq int) string {
	first17 := region + birth.Format("20060102") + threeDigits(seq)
	c, _ := CheckChar(first17)
	return first17 + string(c)
}

func threeDigits(n int) string {
	n %= 1000
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

// Mask hides the middle of an ID for readers who may not see personal data:
// 620102********123X.
func Mask(id string) string {
	if len(id) < 10 {
		return strings.Repeat("*", len(id))
	}
	return id[:6] + strings.Repeat("*", len(id)-10) + id[len(id)-4:]
}

// idInTextRe finds what may be an ID number standing alone in text.
var idInTextRe = regexp.MustCompile(`\b[0-9]{17}[0-9X]\b|\b[0-9]{15}\b`)

// MaskText is the one rule for personal data in free text (a narrative, an
// evidence document) shown to a reader who sees it masked, about the
// person id (named name):
//   - every valid ID number in the text, the person's or another's, as
//     Mask writes it (a long settlement number, whose check character or
//     birth date does not hold, is left alone);
//   - the person's birth date — the digits the masked form hides — wherever
//     it stands on its own, as YYYYMMDD or YYYY-MM-DD, so that the masked ID
//     and a birth date beside it cannot be put back together;
//   - the person's name as MaskName writes it, when it has two characters or
//     more (a one-character name would mask that character in every word; the
//     name field itself is masked whatever its length).
func MaskText(text, id, name string) string {
	text = idInTextRe.ReplaceAllStringFunc(text, func(s string) string {
		if _, err := Normalize(s); err != nil {
			return s
		}
		return Mask(s)
	})
	if len(id) >= 14 {
		birth := id[6:14]
		text = strings.ReplaceAll(text, birth, "********")
		text = strings.ReplaceAll(text, birth[:4]+"-"+birth[4:6]+"-"+birth[6:], "****-**-**")
	}
	if utf8.RuneCountInString(name) > 1 {
		text = strings.ReplaceAll(text, name, MaskName(name))
	}
	return text
}

// SampleBirth spreads test birth dates over 1940–2010 (leap days included).
func SampleBirth(i int) time.Time {
	return time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, (i*7919)%25567)
}

// MaskName keeps the first character of a name, as the spec writes 张*:
// 张三 → 张*, 欧阳娜娜 → 欧*. A one-character name is all mask.
func MaskName(name string) string {
	r := []rune(name)
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	}
	return string(r[0]) + "*"
}
