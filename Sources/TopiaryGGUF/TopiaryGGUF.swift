// TopiaryGGUF: see Package.swift for the layering.
