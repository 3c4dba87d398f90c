package api

import (
	"encoding/json"
	"io"
	"strconv"

	"github.com/labstack/echo/v4"
)

func jsonDecoder(r io.Reader) *json.Decoder {
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	return d
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeJSON answers v as c.JSON would, byte for byte, but written by
// appendTo (the casebook's AppendJSON: no reflection on the hottest
// answers); ?pretty goes through c.JSON.
func writeJSON(c echo.Context, code int, v any, appendTo func([]byte) []byte) error {
	if _, pretty := c.QueryParams()["pretty"]; pretty || c.Echo().Debug {
		return c.JSON(code, v)
	}
	b := appendTo(make([]byte, 0, 4096))
	return c.JSONBlob(code, append(b, '\n'))
}

// appendPage writes a page of items as page[T] marshals: the items, then
// the cursor of the next page or null.
func appendPage[T any](dst []byte, p page[T], appendItem func([]byte, *T) []byte) []byte {
	dst = append(dst, `{"items":[`...)
	for i := range p.Items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendItem(dst, &p.Items[i])
	}
	if p.NextCursor == nil {
		return append(dst, `],"next_cursor":null}`...)
	}
	dst = append(dst, `],"next_cursor":"`...)
	dst = append(dst, *p.NextCursor...) // digits only
	return append(dst, `"}`...)
}
