package acme

// ARICertID is ariCertID, for the tests of package acme_test.
var ARICertID = ariCertID
