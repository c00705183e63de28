package image

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// BenchmarkLoad measures loading a docker-save archive with one 4 MiB
// layer into an empty store: extract, gzip once, unpack, commit.
func BenchmarkLoad(b *testing.B) {
	data := make([]byte, 4<<20)
	rand.Read(data)
	tarball := dockerSave(b, timg{tags: []string{"bench:1"}, layers: [][]byte{layerTar(b, reg("blob", string(data)))}})
	b.SetBytes(int64(len(tarball)))
	for b.Loop() {
		s := newTestStore(b)
		if _, err := s.Load(ctx, bytes.NewReader(tarball)); err != nil {
			b.Fatal(err)
		}
	}
}
