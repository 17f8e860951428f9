//go:build !pam || !cgo

package pamauth

// Available says whether this binary was built with PAM.
const Available = false

func (m *Module) check(service, name, password string) error {
	panic("pamauth: built without PAM") // Open refuses to make a Module
}
