// TopiaryModels: see Package.swift for the layering.
