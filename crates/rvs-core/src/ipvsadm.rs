//! ipvsadm 1.31's command-line grammar (in progress)
