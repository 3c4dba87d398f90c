package api

import (
	"encoding/json"
	"io"
	"strconv"
	"sync"

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
	bp := jsonBuffers.Get().(*[]byte)
	b := append(appendTo((*bp)[:0]), '\n')
	err := c.JSONBlob(code, b) // written to the connection before it returns
	if cap(b) <= maxPooledJSON {
		*bp = b[:0]
		jsonBuffers.Put(bp)
	}
	return err
}

// jsonBuffers are writeJSON's buffers, used again: an answer grown anew
// from a few KB each time made most of what the API allocated (a page of
// fifty clues doubles its way to 128 KB), and so most of the collector's
// work under load.
var jsonBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxPooledJSON bounds the buffers kept: a rare large answer (a page of
// a thousand) is left to the collector.
const maxPooledJSON = 1 << 20

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
