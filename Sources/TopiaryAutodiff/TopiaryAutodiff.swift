// TopiaryAutodiff: see Package.swift for the layering.
