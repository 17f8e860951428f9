package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"postern/gateway/delivery"
	"postern/gateway/queue"
	"postern/web/websession"
)

// maxQueueRows bounds the list page; the command line lists everything.
const maxQueueRows = 500

type rcptRow struct {
	Addr, Status, LastResult string
	Attempts                 int
	Next                     string
}

type queueRow struct {
	ID, From, Age, Size, LastError string
	Held                           bool
	Rcpts                          []rcptRow
}

type queueListData struct {
	Rows  []queueRow
	Total int
}

var statusNames = map[delivery.Status]string{delivery.StatusPending: "pending", delivery.StatusDelivered: "delivered", delivery.StatusFailed: "failed"}

func rcptRows(rs []delivery.Recipient) []rcptRow {
	var out []rcptRow
	for _, rc := range rs {
		row := rcptRow{Addr: rc.Addr, Status: statusNames[rc.Status], LastResult: rc.LastResult, Attempts: rc.Attempts}
		if rc.Status == delivery.StatusPending {
			if rc.NextAttempt.IsZero() {
				row.Next = "now"
			} else {
				row.Next = rc.NextAttempt.UTC().Format(time.RFC3339)
			}
		}
		out = append(out, row)
	}
	return out
}

func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func (h *Handler) queueList(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	list, err := queue.List(h.opt.QueueDir)
	v := view{Title: "Queue", Section: "queue"}
	if err != nil {
		v.Errors = errorLines(err)
	}
	d := queueListData{Total: len(list)}
	now := time.Now()
	for i, m := range list {
		if i >= maxQueueRows {
			break
		}
		row := queueRow{ID: m.ID, From: sender(m.From), Age: m.Age(now).Round(time.Second).String(), Size: sizeString(m.Size), Held: m.Held, Rcpts: rcptRows(m.Rcpts)}
		for _, rc := range m.Rcpts {
			if rc.LastResult != "" {
				row.LastError = rc.LastResult
			}
		}
		d.Rows = append(d.Rows, row)
	}
	v.Data = d
	h.render(w, s, http.StatusOK, "queue", v)
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type queueShowData struct {
	Env      *delivery.Envelope
	From     string
	Received string
	Rcpts    []rcptRow
}

func (h *Handler) queueShow(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	h.showQueued(w, s, r.URL.Query().Get("id"), http.StatusOK, nil)
}

func (h *Handler) showQueued(w http.ResponseWriter, s *websession.Session, id string, status int, problem error) {
	env, err := queue.Show(h.opt.QueueDir, id)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrBadID) || errors.Is(err, os.ErrNotExist) {
			code = http.StatusNotFound
		}
		h.render(w, s, code, "queue-show", view{Title: "Queued message", Section: "queue", Errors: errorLines(err), Data: queueShowData{}})
		return
	}
	v := view{Title: "Queued message " + env.ID, Section: "queue", Data: queueShowData{Env: env, From: sender(env.From), Received: env.Received.UTC().Format(time.RFC3339), Rcpts: rcptRows(env.Rcpts)}}
	if problem != nil {
		v.Errors = errorLines(problem)
	}
	h.render(w, s, status, "queue-show", v)
}

func queueURL(id string) string { return Prefix + "queue/show?id=" + url.QueryEscape(id) }

func (h *Handler) queueRetry(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	id := r.PostFormValue("id")
	if id == "" {
		h.showQueued(w, s, id, http.StatusBadRequest, errors.New("no message named"))
		return
	}
	if err := queue.Retry(h.opt.QueueDir, id); err != nil {
		h.showQueued(w, s, id, http.StatusBadRequest, err)
		return
	}
	h.done(w, r, s, "queue-retry", "message "+id+" will be retried now", queueURL(id), "id", id)
}

func (h *Handler) queueBounce(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	id := r.PostFormValue("id")
	if err := queue.Bounce(h.opt.QueueDir, id); err != nil {
		h.showQueued(w, s, id, http.StatusBadRequest, err)
		return
	}
	h.done(w, r, s, "queue-bounce", "message "+id+" will be returned to its sender", Prefix+"queue", "id", id)
}

func (h *Handler) queueDeleteForm(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	id := r.URL.Query().Get("id")
	env, err := queue.Show(h.opt.QueueDir, id)
	if err != nil {
		h.showQueued(w, s, id, http.StatusNotFound, nil)
		return
	}
	h.render(w, s, http.StatusOK, "queue-delete", view{Title: "Delete " + env.ID, Section: "queue", Data: queueShowData{Env: env, From: sender(env.From), Rcpts: rcptRows(env.Rcpts)}})
}

func (h *Handler) queueDelete(w http.ResponseWriter, r *http.Request, s *websession.Session) {
	id := r.PostFormValue("id")
	if r.PostFormValue("confirm") != "yes" {
		h.showQueued(w, s, id, http.StatusBadRequest, errors.New("tick the box to confirm the deletion"))
		return
	}
	if err := queue.Delete(h.opt.QueueDir, id); err != nil {
		h.showQueued(w, s, id, http.StatusBadRequest, err)
		return
	}
	h.done(w, r, s, "queue-delete", "message "+id+" deleted from the queue (no notice sent)", Prefix+"queue", "id", id)
}
