// TopiaryEval: see Package.swift for the layering.
