package reformime


func (r *runner) rewriteMessage() int             { return 0 }
func (r *runner) toUTF8() int                     { return 0 }
