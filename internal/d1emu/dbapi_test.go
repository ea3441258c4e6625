package d1emu_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	cfd1 "github.com/cloudflare/cloudflare-go/v6/d1"

	"github.com/d1backup/d1backup/internal/d1emu"
)

func TestJurisdictions(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	plain := e.mustCreate("plain", smallSeed)
	eu, err := e.CreateDatabase("eu", smallSeed, d1emu.WithJurisdiction("eu"), d1emu.WithLocationHint("apac"))
	if err != nil {
		t.Fatal(err)
	}
	apac, _ := e.CreateDatabase("apac", "", d1emu.WithLocationHint("apac"))
	syn, _ := e.AddSyntheticDatabase("fed-syn", 1000, d1emu.WithJurisdiction("fedramp"))
	list := e.srv.URL + "/client/v4/accounts/" + e.AccountID() + "/d1/database"
	env := e.envelope(e.do("POST", list, e.Token(), map[string]any{"name": "created", "jurisdiction": "fedramp", "primary_location_hint": "weur"}))
	var created struct {
		UUID         string  `json:"uuid"`
		Jurisdiction *string `json:"jurisdiction"`
	}
	if json.Unmarshal(env.Result, &created); !env.Success || created.Jurisdiction == nil || *created.Jurisdiction != "fedramp" {
		t.Fatalf("create with a jurisdiction: %+v", env)
	}

	svc := cfd1.NewDatabaseService(e.sdkOptions()...)
	ctx := context.Background()
	var lp cfd1.DatabaseListParams
	lp.AccountID.Value, lp.AccountID.Present = e.AccountID(), true
	var np cfd1.DatabaseNewParams
	np.AccountID.Value, np.AccountID.Present = e.AccountID(), true
	np.Name.Value, np.Name.Present = "sdk-eu", true
	np.Jurisdiction.Value, np.Jurisdiction.Present = cfd1.DatabaseNewParamsJurisdictionEu, true
	np.PrimaryLocationHint.Value, np.PrimaryLocationHint.Present = cfd1.DatabaseNewParamsPrimaryLocationHintWeur, true
	sdkEU, err := svc.New(ctx, np)
	if err != nil || sdkEU.Jurisdiction != cfd1.D1JurisdictionEu || sdkEU.Name != "sdk-eu" || sdkEU.ReadReplication.Mode != "disabled" {
		t.Fatalf("New in the eu = %+v, %v", sdkEU, err)
	}
	got := map[string]string{}
	pager := svc.ListAutoPaging(ctx, lp)
	for pager.Next() {
		it := pager.Current()
		got[it.UUID] = string(it.Jurisdiction)
		if it.Jurisdiction != "" && !it.Jurisdiction.IsKnown() {
			t.Errorf("%s: jurisdiction %q unknown to the SDK", it.Name, it.Jurisdiction)
		}
	}
	want := map[string]string{plain.UUID: "", eu.UUID: "eu", apac.UUID: "", syn.UUID: "fedramp", created.UUID: "fedramp", sdkEU.UUID: "eu"}
	for id, j := range want {
		if got[id] != j {
			t.Errorf("list: %s has jurisdiction %q, want %q", id, got[id], j)
		}
	}
	var gp cfd1.DatabaseGetParams
	gp.AccountID.Value, gp.AccountID.Present = e.AccountID(), true
	for id, j := range want {
		d, err := svc.Get(ctx, id, gp)
		if err != nil || string(d.Jurisdiction) != j {
			t.Errorf("get %s: %+v, %v; want jurisdiction %q", id, d, err, j)
		}
		if j == "" && !strings.Contains(d.JSON.RawJSON(), `"jurisdiction":null`) {
			t.Errorf("get %s: %s; want jurisdiction null", id, d.JSON.RawJSON())
		}
	}

	// The region that serves queries follows the jurisdiction, then the hint.
	for id, region := range map[string]string{plain.UUID: "ENAM", eu.UUID: "WEUR", apac.UUID: "APAC"} {
		_, _, entries := e.query(id, "query", map[string]any{"sql": "SELECT 1"})
		if len(entries) != 1 || entries[0].Meta.ServedByRegion != region {
			t.Errorf("%s: served by %+v, want %s", id, entries, region)
		}
	}
	if ds := e.Databases(); ds[1].Jurisdiction != "eu" || ds[1].PrimaryLocationHint != "apac" {
		t.Errorf("Databases()[1] = %+v", ds[1])
	}
}

func TestCreateRejectsPlacement(t *testing.T) {
	e := newEmu(t, d1emu.Options{})
	list := e.srv.URL + "/client/v4/accounts/" + e.AccountID() + "/d1/database"
	for _, body := range []map[string]any{
		{"name": "x", "jurisdiction": "mars"},
		{"name": "x", "jurisdiction": "EU"},
		{"name": "x", "primary_location_hint": "moon"},
	} {
		r := e.do("POST", list, e.Token(), body)
		env := e.envelope(r)
		if r.status != 400 || env.Success || env.Errors[0].Code != 7400 {
			t.Errorf("create %v: HTTP %d %s", body, r.status, r.body)
		}
	}
	if _, err := e.CreateDatabase("x", "", d1emu.WithJurisdiction("mars")); err == nil || !strings.Contains(err.Error(), "jurisdiction") {
		t.Errorf("CreateDatabase in mars: %v", err)
	}
	if len(e.Databases()) != 0 {
		t.Errorf("databases after refusals: %+v", e.Databases())
	}
}
