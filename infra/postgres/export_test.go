package postgres

// MigrationVersions are the versions of the embedded migrations, in order.
func MigrationVersions() ([]int32, error) {
	ms, err := loadMigrations(migrationFiles, migrationDir)
	if err != nil {
		return nil, err
	}
	vs := make([]int32, len(ms))
	for i, m := range ms {
		vs[i] = int32(m.version)
	}
	return vs, nil
}
