package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/docker/go-units"
)

// Output formats accepted by --format, as in docker.
const (
	tableFormatKey = "table"
	jsonFormatKey  = "json"
	quietFormat    = "{{.ID}}"
)

// templateFuncs are docker's template functions.
var templateFuncs = template.FuncMap{
	"json":     formatJSON,
	"split":    strings.Split,
	"join":     joinElements,
	"title":    titleCase,
	"lower":    strings.ToLower,
	"upper":    strings.ToUpper,
	"pad":      padWithSpace,
	"truncate": truncateWithLength,
	"println":  fmt.Sprintln,
}

// headerFuncs make a table template print its header row from a map of
// column names: every function returns its first argument unchanged.
var headerFuncs = template.FuncMap{
	"json":     func(v string) string { return v },
	"split":    func(v string, _ string) string { return v },
	"join":     func(v string, _ string) string { return v },
	"title":    func(v string) string { return v },
	"lower":    func(v string) string { return v },
	"upper":    func(v string) string { return v },
	"truncate": func(v string, _ int) string { return v },
}

func parseTemplate(format string) (*template.Template, error) {
	return template.New("").Funcs(templateFuncs).Parse(format)
}

func titleCase(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		defer func() { prev = r }()
		if unicode.IsSpace(prev) || prev == '-' || prev == '_' {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func padWithSpace(source string, prefix, suffix int) string {
	if source == "" {
		return source
	}
	return strings.Repeat(" ", prefix) + source + strings.Repeat(" ", suffix)
}

func truncateWithLength(source string, length int) string {
	if len(source) < length {
		return source
	}
	return source[:length]
}

func formatJSON(v any) string {
	buf := &bytes.Buffer{}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSpace(buf.String())
}

func joinElements(elems any, sep string) (string, error) {
	if elems == nil {
		return "", nil
	}
	if ss, ok := elems.([]string); ok {
		return strings.Join(ss, sep), nil
	}
	switch rv := reflect.ValueOf(elems); rv.Kind() {
	case reflect.Array, reflect.Slice:
		var b strings.Builder
		for i := range rv.Len() {
			if i > 0 {
				b.WriteString(sep)
			}
			fmt.Fprint(&b, rv.Index(i).Interface())
		}
		return b.String(), nil
	case reflect.Map:
		var out []string
		for _, k := range rv.MapKeys() {
			out = append(out, fmt.Sprint(rv.MapIndex(k).Interface()))
		}
		sort.Strings(out)
		return strings.Join(out, sep), nil
	}
	return "", fmt.Errorf("expected slice, got %T", elems)
}

// isTableFormat reports docker's "table ..." directive.
func isTableFormat(f string) bool { return strings.HasPrefix(f, tableFormatKey) }

// templateString turns a --format value into the template to execute.
func templateString(f string) string {
	switch f {
	case tableFormatKey:
		return ""
	case jsonFormatKey:
		return "{{json .}}"
	}
	f = strings.TrimPrefix(f, tableFormatKey)
	f = strings.Trim(f, " ")
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f)
}

// writeList renders rows with a docker --format value. Table formats get a
// header row computed by running the template over the headers map, and
// are aligned the way docker aligns them.
func writeList(out io.Writer, format string, headers map[string]string, rows []any) error {
	tmpl, err := parseTemplate(templateString(format))
	if err != nil {
		return StatusError{Status: 64, Message: "template parsing error: " + err.Error()}
	}
	var buf bytes.Buffer
	for _, r := range rows {
		if err := tmpl.Execute(&buf, r); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		buf.WriteString("\n")
	}
	if !isTableFormat(format) {
		_, err := buf.WriteTo(out)
		return err
	}
	tw := tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
	_ = tmpl.Funcs(headerFuncs).Execute(tw, headerMap(headers))
	tw.Write([]byte{'\n'})
	buf.WriteTo(tw)
	return tw.Flush()
}

// headerMap is what a table template runs on to print its header: field
// names map to column titles, and {{.Label "com.x.y"}} titles itself "y".
type headerMap map[string]string

func (headerMap) Label(name string) string {
	n := strings.Split(name, ".")
	return strings.NewReplacer("-", " ", "_", " ").Replace(n[len(n)-1])
}

// marshalMethods encodes a row as the JSON object of its exported,
// argument-less, single-result methods (what docker's `--format json` prints).
func marshalMethods(x any) ([]byte, error) {
	val := reflect.ValueOf(x)
	typ := val.Type()
	m := map[string]any{}
	for i := 0; i < val.NumMethod(); i++ {
		meth := typ.Method(i)
		ft := val.Method(i).Type()
		if ft.NumIn() != 0 || ft.NumOut() != 1 || !unicode.IsUpper(rune(meth.Name[0])) {
			continue
		}
		m[meth.Name] = val.Method(i).Call(nil)[0].Interface()
	}
	return json.Marshal(m)
}

// ---- display helpers shared by the list commands ----

// truncateID shortens an ID (or digest) to docker's 12 characters.
func truncateID(id string) string {
	if i := strings.IndexRune(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// ellipsis cuts s to max display characters ending in "…".
func ellipsis(s string, max int) string {
	if max <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	rs := []rune(s)
	if max == 1 {
		return string(rs[0])
	}
	return string(rs[:max-1]) + "…"
}

// humanDuration is docker's "3 seconds", "About a minute", "2 hours".
func humanDuration(d time.Duration) string { return units.HumanDuration(d) }

// timeAgo renders t relative to now as docker does ("2 minutes ago").
func timeAgo(now, t time.Time) string {
	return humanDuration(now.UTC().Sub(t)) + " ago"
}

// prettyPrint is docker's capitalizeFirst: first letter upper, the rest
// lower ("running" -> "Running").
func prettyPrint(s string) string {
	switch len(s) {
	case 0:
		return s
	case 1:
		return strings.ToLower(s)
	}
	return strings.ToUpper(s[:1]) + strings.ToLower(s[1:])
}

// sortedKV renders a map as sorted "k=v" pairs joined with sep.
func sortedKV(m map[string]string, sep string) string {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, sep)
}

// naturalLess orders "web.2" before "web.10", as docker sorts task names.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		ad, bd := isDigit(a[0]), isDigit(b[0])
		switch {
		case ad && bd:
			an, arest := leadingDigits(a)
			bn, brest := leadingDigits(b)
			at, bt := strings.TrimLeft(an, "0"), strings.TrimLeft(bn, "0")
			if len(at) != len(bt) {
				return len(at) < len(bt)
			}
			if at != bt {
				return at < bt
			}
			if len(an) != len(bn) {
				return len(an) < len(bn)
			}
			a, b = arest, brest
		case a[0] != b[0]:
			return a[0] < b[0]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func leadingDigits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// bytesSize is docker's binary size rendering ("1.5GiB").
func bytesSize(n float64) string { return units.BytesSize(n) }

// humanSize is docker's decimal size rendering used in image lists ("4.26MB").
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }
