import TopiaryCore

func setBLASThreads(_ n: Int) { BLAS.threads = n }
