"""Desktop: windows, applications, input and screenshots."""
