package admin

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"postern/gateway/queue"
	"postern/web/websession"
)

type listenerRow struct {
	Name  string
	Addrs string
}

type overviewData struct {
	Version     string
	Started     string
	Uptime      string
	Listeners   []listenerRow
	QueueSize   int
	QueueError  string
	ConfigOK    bool
	ConfigLines []string
	CanReload   bool
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	d := overviewData{
		Version:   h.opt.Version,
		Started:   h.opt.Started.UTC().Format(time.RFC3339),
		Uptime:    time.Since(h.opt.Started).Round(time.Second).String(),
		CanReload: h.opt.Reload != nil,
		ConfigOK:  true,
	}
	if d.Version == "" {
		d.Version = "unknown"
	}
	if h.opt.Listeners != nil {
		ls := h.opt.Listeners()
		for _, name := range slices.Sorted(maps.Keys(ls)) {
			d.Listeners = append(d.Listeners, listenerRow{name, strings.Join(ls[name], " ")})
		}
	}
	if h.opt.QueueDir != "" {
		if list, err := queue.List(h.opt.QueueDir); err != nil {
			d.QueueError = err.Error()
		} else {
			d.QueueSize = len(list)
		}
	}
	if h.opt.CheckConfig != nil {
		if err := h.opt.CheckConfig(h.opt.ConfigDir); err != nil {
			d.ConfigOK, d.ConfigLines = false, errorLines(err)
		}
	}
	h.render(w, s, http.StatusOK, "overview", view{Title: "Overview", Section: "overview", Data: d})
}
