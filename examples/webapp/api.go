package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/tiered"
)

// The cache use of the original site, group by group (names and TTLs from its design):
//
//	data:articles:list  5 min   a page of the article list as served, key Key(page, perPage),
//	                            tagged article:<id> for each article it shows
//	data:articles:page  5 min   the IDs of a page of the list, key Key(page, perPage)
//	data:article        5 min   one article, key Key(id), tagged article:<id>; a missing ID is
//	                            cached as a miss (1 min)
//	user:profile        10 min  one user's public profile, key Key(id); misses cached too
//	count:article:<id>:likes    the like counter, in Redis only, mirroring the likes table (1 min)
//
// A warm page of the list is one entry. A cold one is built from its IDs, then its articles
// and their authors in one GetOrLoadMany each: three queries at most, whatever its length, and
// none for what those groups hold. An edit of an article invalidates its tag: the article and
// every list page that shows it are dropped on every instance, and the pages that do not show
// it stay; the rebuilt pages find their IDs and the other articles cached, and load only the
// edited row. Reads go through the cache: L1, then Redis, then the database. Writes go to the
// database first, then invalidate what they changed on every instance. When Redis is down,
// the loaders answer from the database and counter errors fall back to counting in the
// database.

const (
	listTTL        = 5 * time.Minute
	articleTTL     = 5 * time.Minute
	profileTTL     = 10 * time.Minute
	notFoundTTL    = time.Minute
	maxPerPage     = 100
	maxBodyBytes   = 1 << 20
	defaultPerPage = 20
)

// api serves the site's endpoints.
type api struct {
	log      *zap.Logger
	db       *store
	c        *tiered.Cache
	lists    *tiered.Group[[]listItem]
	pages    *tiered.Group[[]int64]
	articles *tiered.Group[Article]
	profiles *tiered.Group[User]
	likes    *counter.Counters
}

func newAPI(c *tiered.Cache, db *store, opts tiered.Options, log *zap.Logger) *api {
	return &api{
		log:      log,
		db:       db,
		c:        c,
		lists:    tiered.NewGroup[[]listItem](c, "data:articles:list", listTTL),
		pages:    tiered.NewGroup[[]int64](c, "data:articles:page", listTTL),
		articles: tiered.NewGroup[Article](c, "data:article", articleTTL, tiered.WithNotFoundTTL(notFoundTTL)),
		profiles: tiered.NewGroup[User](c, "user:profile", profileTTL, tiered.WithNotFoundTTL(notFoundTTL)),
		// Cache mode: the likes table is the truth, the counter expires and is reseeded.
		likes: counter.FromCache(c, counter.Options{TTL: counter.DefaultCacheTTL}),
	}
}

func (a *api) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/articles", a.listArticles)
	mux.HandleFunc("POST /api/articles", a.createArticle)
	mux.HandleFunc("GET /api/articles/{id}", a.getArticle)
	mux.HandleFunc("PUT /api/articles/{id}", a.updateArticle)
	mux.HandleFunc("POST /api/articles/{id}/like", a.likeArticle)
	mux.HandleFunc("GET /api/users/{id}", a.getUser)
	mux.HandleFunc("GET /debug/db-queries", a.dbQueries)
}

// listItem is an article of a list page, with its author.
type listItem struct {
	Article
	Author User `json:"author"`
}

// GET /api/articles?page=&per_page=
func (a *api) listArticles(w http.ResponseWriter, r *http.Request) {
	page, err := intParam(r, "page", 1, 1, 1<<20)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	perPage, err := intParam(r, "per_page", defaultPerPage, 1, maxPerPage)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	list, err := a.lists.GetOrLoad(r.Context(), a.lists.Key(page, perPage), func(ctx context.Context) ([]listItem, error) {
		return a.buildPage(ctx, page, perPage)
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"page": page, "per_page": perPage, "articles": list})
}

// buildPage is the loader of a list page: its IDs, then its articles and their authors.
func (a *api) buildPage(ctx context.Context, page, perPage int) ([]listItem, error) {
	ids, err := a.pages.GetOrLoad(ctx, a.pages.Key(page, perPage), func(ctx context.Context) ([]int64, error) {
		return a.db.pageIDs(ctx, page, perPage)
	})
	if err != nil {
		return nil, err
	}
	// The page shows these articles: tag it with them before reading them, so that an edit
	// from now on drops the page, even one made while it is being built.
	tags := make([]string, len(ids))
	for i, id := range ids {
		tags[i] = articleTag(id)
	}
	tiered.AddTags(ctx, tags...)
	arts, err := loadByID(ctx, a.articles, ids, a.db.articles, articleTag)
	if err != nil {
		return nil, err
	}
	authorIDs := make([]int64, 0, len(arts))
	for _, id := range ids {
		if art, ok := arts[id]; ok {
			authorIDs = append(authorIDs, art.AuthorID)
		}
	}
	authors, err := loadByID(ctx, a.profiles, authorIDs, a.db.users, nil)
	if err != nil {
		return nil, err
	}
	list := make([]listItem, 0, len(ids))
	for _, id := range ids {
		if art, ok := arts[id]; ok { // an ID without its row: the article is gone, the page entry not yet
			list = append(list, listItem{Article: art, Author: authors[art.AuthorID]})
		}
	}
	return list, nil
}

// articleTag is the tag of everything that shows article id: the article and the list pages.
func articleTag(id int64) string { return "article:" + strconv.FormatInt(id, 10) }

// loadByID reads the rows of ids through g in one batch: what neither cache tier holds is
// loaded by one call of query, which returns the rows it found. IDs it does not return are
// cached as misses. tag, if not nil, gives the tag of each row.
func loadByID[T any](ctx context.Context, g *tiered.Group[T], ids []int64, query func(context.Context, []int64) (map[int64]T, error), tag func(int64) string) (map[int64]T, error) {
	keys := make([]string, len(ids))
	idOf := make(map[string]int64, len(ids))
	for i, id := range ids {
		keys[i] = g.Key(id)
		idOf[keys[i]] = id
	}
	byKey, err := g.GetOrLoadMany(ctx, keys, func(ctx context.Context, missing []string) (map[string]T, error) {
		want := make([]int64, len(missing))
		for i, k := range missing {
			want[i] = idOf[k]
			if tag != nil {
				tiered.AddTagsFor(ctx, k, tag(want[i])) // before the query, as AddTags asks
			}
		}
		rows, err := query(ctx, want)
		if err != nil {
			return nil, err
		}
		out := make(map[string]T, len(rows))
		for id, row := range rows {
			out[g.Key(id)] = row
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]T, len(byKey))
	for k, v := range byKey {
		byID[idOf[k]] = v
	}
	return byID, nil
}

// articleView is an article with its like count, as GET /api/articles/{id} returns it.
type articleView struct {
	Article
	Likes int64 `json:"likes"`
}

// GET /api/articles/{id}
func (a *api) getArticle(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	art, err := a.articles.GetOrLoad(r.Context(), a.articles.Key(id), func(ctx context.Context) (Article, error) {
		return notFound(a.db.article(ctx, id))
	}, tiered.Tags(articleTag(id)))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	likes, err := a.likeCount(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, articleView{Article: art, Likes: likes})
}

// POST /api/articles {"title", "body", "author_id"}
func (a *api) createArticle(w http.ResponseWriter, r *http.Request) {
	var in articleInput
	if !readJSON(w, r, &in) {
		return
	}
	if in.Title == nil || strings.TrimSpace(*in.Title) == "" || in.AuthorID == nil {
		writeError(w, http.StatusBadRequest, "title and author_id are required")
		return
	}
	body := ""
	if in.Body != nil {
		body = *in.Body
	}
	art, err := a.db.createArticle(r.Context(), *in.Title, body, *in.AuthorID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Every page of the list may have changed: drop them all, on every instance, in O(1). And
	// someone may have asked for this ID before it existed: its cached miss goes.
	a.invalidate(r.Context(), "clear article pages", a.pages.Clear(r.Context()))
	a.invalidate(r.Context(), "clear article lists", a.lists.Clear(r.Context()))
	a.invalidate(r.Context(), "delete article", a.articles.Delete(r.Context(), a.articles.Key(art.ID)))
	w.Header().Set("Location", fmt.Sprintf("/api/articles/%d", art.ID))
	writeJSON(w, http.StatusCreated, art)
}

// PUT /api/articles/{id} {"title"?, "body"?}
func (a *api) updateArticle(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var in articleInput
	if !readJSON(w, r, &in) {
		return
	}
	if in.Title == nil && in.Body == nil {
		writeError(w, http.StatusBadRequest, "nothing to update: give title and/or body")
		return
	}
	if in.Title != nil && strings.TrimSpace(*in.Title) == "" {
		writeError(w, http.StatusBadRequest, "title must not be empty")
		return
	}
	art, err := a.db.updateArticle(r.Context(), id, in.Title, in.Body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// The database first, then the cache: a reader that loads between the two gets the
	// new row. The article and the list pages that show it go, on every instance; the other
	// pages, and the pages' IDs (an edit moves no article), stay.
	a.invalidate(r.Context(), "invalidate article tag", a.c.InvalidateTags(r.Context(), articleTag(id)))
	writeJSON(w, http.StatusOK, art)
}

// POST /api/articles/{id}/like [{"user_id"}]
func (a *api) likeArticle(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var in struct {
		UserID int64 `json:"user_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error()) // an empty body is an anonymous like
		return
	}
	if err := a.db.addLike(r.Context(), id, in.UserID); err != nil {
		a.fail(w, r, err)
		return
	}
	key := likesKey(id)
	n, err := a.likes.Increment(r.Context(), key, 1)
	if errors.Is(err, counter.ErrNotFound) {
		// The counter expired: reseed it from the table, which already holds this like.
		n, err = a.likes.GetOrLoad(r.Context(), key, func(ctx context.Context) (int64, error) { return a.db.likeCount(ctx, id) })
	}
	if err != nil {
		a.log.Warn("like counter unavailable: counting in the database", zap.Int64("article", id), zap.Error(err))
		if n, err = a.db.likeCount(r.Context(), id); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]int64{"article_id": id, "likes": n})
}

// likeCount reads an article's like counter, seeding it from the database when it is missing,
// and counts in the database when Redis cannot answer.
func (a *api) likeCount(ctx context.Context, id int64) (int64, error) {
	n, err := a.likes.GetOrLoad(ctx, likesKey(id), func(ctx context.Context) (int64, error) { return a.db.likeCount(ctx, id) })
	if err == nil {
		return n, nil
	}
	a.log.Warn("like counter unavailable: counting in the database", zap.Int64("article", id), zap.Error(err))
	return a.db.likeCount(ctx, id)
}

func likesKey(id int64) counter.Key {
	return counter.Key{Target: "article", ID: strconv.FormatInt(id, 10), Counter: "likes"}
}

// GET /api/users/{id}
func (a *api) getUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	u, err := a.profiles.GetOrLoad(r.Context(), a.profiles.Key(id), func(ctx context.Context) (User, error) {
		return notFound(a.db.user(ctx, id))
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// GET /debug/db-queries: how many statements requests have run, for tests and the curious.
func (a *api) dbQueries(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int64{"queries": a.db.queries.Load()})
}

// invalidate logs a failed invalidation. The database write has succeeded, so the request
// does not fail; the entry's TTL bounds how long a stale value can be served.
func (a *api) invalidate(ctx context.Context, what string, err error) {
	if err != nil && ctx.Err() == nil {
		a.log.Error("cache invalidation failed: stale entries live until their TTL", zap.String("op", what), zap.Error(err))
	}
}

// fail answers an error: 404 and 400 for what the client asked, 500 (logged) for the rest.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNotFound), errors.Is(err, tiered.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, errBadAuthor), errors.Is(err, errBadUser):
		writeError(w, http.StatusBadRequest, err.Error())
	case r.Context().Err() != nil:
		// The client has gone: nobody reads the answer.
	default:
		a.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// notFound turns the database's errNotFound into tiered.ErrNotFound, which the cache keeps
// as a miss (WithNotFoundTTL): the next request for the ID does not reach the database.
func notFound[T any](v T, err error) (T, error) {
	if errors.Is(err, errNotFound) {
		return v, tiered.ErrNotFound
	}
	return v, err
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "id must be a positive integer")
		return 0, false
	}
	return id, true
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
