"""Fields: encodings and networks that map 3D points to SDF values, features and materials."""
