package maildir
