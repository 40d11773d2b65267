// TopiaryTokenizers: see Package.swift for the layering.
