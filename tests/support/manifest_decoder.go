// The registry's reading of image manifests, for blobgate's differential test.
//
// Each input line is "<Content-Type>\t<base64 of the manifest bytes>"; each output line
// is "rejected" (distribution refuses the manifest at push) or a JSON array of the
// digests whose presence in the repository distribution checks (config, then layers,
// first occurrence each). The types below have the field shapes and json tags of
// distribution's schema2 and ocischema manifests and of its (and the image spec's)
// descriptor and platform; decoding is plain encoding/json, as in the registry.
// The verification rules are those of distribution 2.8 and 3 together: a digest must be
// valid; a foreign Docker layer needs urls; the urls of foreign and OCI layers must be
// http(s) without a fragment (as with validation.manifests.urls allowing them all; by
// default distribution allows none, refusing more); a descriptor is checked only when it
// has no urls (2.8) and is not a foreign Docker layer (3).
//
// With "-orbits" it prints instead every non-ASCII rune whose unicode.SimpleFold orbit
// holds an ASCII letter, as "<hex code point> <letter>".
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"unicode"
)

const (
	dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	ociManifest    = "application/vnd.oci.image.manifest.v1+json"
	foreignLayer   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

var validDigest = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)

var ociLayers = map[string]bool{
	"application/vnd.oci.image.layer.v1.tar":                       true,
	"application/vnd.oci.image.layer.v1.tar+gzip":                  true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar":      true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": true,
}

type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
	Features     []string `json:"features,omitempty"`
}

type Descriptor struct {
	MediaType    string            `json:"mediaType,omitempty"`
	Size         int64             `json:"size,omitempty"`
	Digest       string            `json:"digest,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Data         []byte            `json:"data,omitempty"`
}

type Versioned struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType,omitempty"`
}

type Schema2Manifest struct {
	Versioned
	Config Descriptor   `json:"config"`
	Layers []Descriptor `json:"layers"`
}

type OCIManifest struct {
	Versioned
	Config      Descriptor        `json:"config"`
	Layers      []Descriptor      `json:"layers"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type unknownDocument struct {
	Manifests interface{} `json:"manifests,omitempty"`
}

// references decodes body as the manifest kind the Content-Type names, or fails as
// distribution's unmarshal functions do.
func references(kind string, body []byte) ([]Descriptor, bool) {
	switch kind {
	case dockerManifest:
		var m Schema2Manifest
		if json.Unmarshal(body, &m) != nil || m.MediaType != dockerManifest || m.SchemaVersion != 2 {
			return nil, false
		}
		return append([]Descriptor{m.Config}, m.Layers...), true
	case ociManifest:
		var doc unknownDocument
		if json.Unmarshal(body, &doc) != nil || doc.Manifests != nil {
			return nil, false
		}
		var m OCIManifest
		if json.Unmarshal(body, &m) != nil || m.SchemaVersion != 2 {
			return nil, false
		}
		if m.MediaType != "" && m.MediaType != ociManifest {
			return nil, false
		}
		return append([]Descriptor{m.Config}, m.Layers...), true
	}
	return nil, false
}

func validURLs(urls []string) bool {
	for _, u := range urls {
		parsed, err := url.Parse(u)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Fragment != "" {
			return false
		}
	}
	return true
}

// checked is what the registry verifies of a manifest it accepts, or false if it refuses it.
func checked(kind string, body []byte) ([]string, bool) {
	refs, ok := references(kind, body)
	if !ok {
		return nil, false
	}
	out, seen := []string{}, map[string]bool{}
	for _, d := range refs {
		if !validDigest.MatchString(d.Digest) {
			return nil, false
		}
		foreign := kind == dockerManifest && d.MediaType == foreignLayer
		if foreign && len(d.URLs) == 0 {
			return nil, false
		}
		if (foreign || (kind == ociManifest && ociLayers[d.MediaType])) && !validURLs(d.URLs) {
			return nil, false
		}
		if len(d.URLs) == 0 && !seen[d.Digest] {
			seen[d.Digest] = true
			out = append(out, d.Digest)
		}
	}
	return out, true
}

func orbits() {
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < 0x80 && unicode.IsLetter(f) {
				fmt.Printf("%04X %c\n", r, f)
			}
		}
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-orbits" {
		orbits()
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		var kind, encoded string
		if _, err := fmt.Sscanf(in.Text(), "%s\t%s", &kind, &encoded); err != nil {
			panic(err)
		}
		body, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			panic(err)
		}
		digests, ok := checked(kind, body)
		if !ok {
			fmt.Fprintln(out, "rejected")
			continue
		}
		line, _ := json.Marshal(digests)
		fmt.Fprintln(out, string(line))
	}
	if err := in.Err(); err != nil {
		panic(err)
	}
}
