package reformime
