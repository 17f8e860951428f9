package webmail

import (
	"fmt"
	"html/template"
	"io/fs"
	"strings"
)

// parsePages parses each page's template with the layout around it.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"listURL": func(folder string) string { return listURL(folder, listQuery{}) },
		"join":    func(s []string) string { return strings.Join(s, ", ") },
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("webmail: template %s: %w", base, err)
		}
		pages[base] = t
	}
	return pages, nil
}
