package api

import (
	"encoding/json"
	"io"
	"strconv"
)

func jsonDecoder(r io.Reader) *json.Decoder {
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	return d
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
