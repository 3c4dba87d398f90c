// collider users: add, list and revoke users and their tokens.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"collider/casebook"
	"collider/domain"
)

func cmdUsers(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, `usage: collider users add --data DIR --role province|city|modeler|admin [--city 620100] --name NAME
       collider users list --data DIR
       collider users revoke --data DIR ID`)
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	fs := flag.NewFlagSet("users "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "role: province, city, modeler or admin")
	city := fs.String("city", "", "city code for role city, e.g. 620100")
	name := fs.String("name", "", "the user's name, e.g. 兰州市医保局")
	cfg, err := parseWithConfig(fs, args[1:], (*Config).storeFlags)
	if err != nil {
		return 2
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "collider users:", err)
		return 1
	}
	defer s.Close()
	cb := casebook.New(s.DB)
	switch args[0] {
	case "add":
		r, err := casebook.ParseRole(*role)
		if err != nil {
			fmt.Fprintln(stderr, "collider users add:", err)
			return 2
		}
		u, token, err := cb.AddUser(ctx, *name, r, *city)
		if err != nil {
			fmt.Fprintln(stderr, "collider users add:", err)
			return 1
		}
		fmt.Fprintf(stdout, "user %d %s (%s%s) added; its token is shown once:\n%s\n", u.ID, u.Name, u.Role, cityNote(u.City), token)
	case "list":
		var us []casebook.User
		for after := int64(0); ; {
			page, err := cb.Users(ctx, after, domain.MaxPage)
			if err != nil {
				fmt.Fprintln(stderr, "collider users list:", err)
				return 1
			}
			us = append(us, page...)
			if len(page) < domain.MaxPage {
				break
			}
			after = page[len(page)-1].ID
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "# id\tname\trole\tcity\tcreated\trevoked")
		for _, u := range us {
			revoked := "-"
			if u.RevokedAt != nil {
				revoked = u.RevokedAt.Format("2006-01-02 15:04")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Name, u.Role, orDash(u.City), u.CreatedAt.Format("2006-01-02 15:04"), revoked)
		}
		tw.Flush()
	case "revoke":
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil || fs.NArg() != 1 {
			usage()
			return 2
		}
		if err := cb.Revoke(ctx, id); err != nil {
			fmt.Fprintln(stderr, "collider users revoke:", err)
			return 1
		}
		fmt.Fprintf(stdout, "user %d revoked\n", id)
	default:
		usage()
		return 2
	}
	return 0
}

func cityNote(city string) string {
	if city == "" {
		return ""
	}
	return " " + city
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
