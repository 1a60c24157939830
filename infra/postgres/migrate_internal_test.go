package postgres

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []int // versions in order
		wantErr string
	}{
		{"sorted by version", fstest.MapFS{
			"m/0010_later.sql": file("B"), "m/0002_second.sql": file("A"), "m/0001_first.sql": file("0"),
		}, []int{1, 2, 10}, ""},
		{"empty directory", fstest.MapFS{"m": &fstest.MapFile{Mode: fs.ModeDir | 0o755}}, nil, ""},
		{"name without version", fstest.MapFS{"m/first.sql": file("")}, nil, "not named"},
		{"not sql", fstest.MapFS{"m/0001_first.txt": file("")}, nil, "not named"},
		{"uppercase", fstest.MapFS{"m/0001_First.sql": file("")}, nil, "not named"},
		{"version zero", fstest.MapFS{"m/0000_zero.sql": file("")}, nil, "version 0"},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": file(""), "m/0001_b.sql": file("")}, nil, "share version 1"},
		{"missing directory", fstest.MapFS{"other/0001_a.sql": file("")}, nil, "cannot read migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := loadMigrations(tt.files, "m")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.version)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("versions = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("versions = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, migrationDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.version != i+1 {
			t.Errorf("migration %s has version %d, want %d: versions are consecutive", m.name, m.version, i+1)
		}
		if strings.TrimSpace(m.sql) == "" {
			t.Errorf("migration %s is empty", m.name)
		}
	}
}
