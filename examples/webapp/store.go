package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The database: SQLite through modernc.org/sqlite (pure Go). Every method that serves a
// request runs exactly one statement and counts it, so a test can tell a cached answer from a
// database one.

var (
	errNotFound  = errors.New("not found")
	errBadAuthor = errors.New("no such author")
	errBadUser   = errors.New("no such user")
)

// Article is a row of the articles table.
type Article struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	AuthorID  int64     `json:"author_id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// User is a row of the users table: the public profile.
type User struct {
	ID       int64     `json:"id"`
	Name     string    `json:"name"`
	Bio      string    `json:"bio"`
	JoinedAt time.Time `json:"joined_at"`
}

// store is the site's database.
type store struct {
	db      *sql.DB
	queries atomic.Int64 // statements run for requests since start (seeding excluded)
}

// openStore opens (or creates) the database at path, ":memory:" for a private in-memory
// one. A file may be shared by several instances: writers wait for each other
// (busy_timeout) instead of failing, and WAL lets readers run beside a writer.
func openStore(path string) (*store, error) {
	// _txlock=immediate: a transaction takes the write lock when it begins, so two
	// instances seeding one file serialise instead of failing to upgrade a read lock.
	dsn := path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if path == ":memory:" {
		// Every connection to ":memory:" is a database of its own: keep exactly one, forever.
		db.SetMaxOpenConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	}
	return &store{db: db}, nil
}

func (s *store) Close() error { return s.db.Close() }

var schema = []string{
	`CREATE TABLE IF NOT EXISTS users (
		id         INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		bio        TEXT    NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS articles (
		id         INTEGER PRIMARY KEY,
		title      TEXT    NOT NULL,
		body       TEXT    NOT NULL,
		author_id  INTEGER NOT NULL REFERENCES users(id),
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS likes (
		id         INTEGER PRIMARY KEY,
		article_id INTEGER NOT NULL REFERENCES articles(id),
		user_id    INTEGER REFERENCES users(id),
		created_at INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS likes_by_article ON likes(article_id)`,
}

// Seed data: 10 users, 50 articles, a few likes on most of them.
const (
	seedUsers    = 10
	seedArticles = 50
)

var (
	seedNames  = []string{"Lin Wei", "Ana Souza", "Kofi Mensah", "Yuki Tanaka", "Priya Nair", "Lars Berg", "Amara Okafor", "Diego Ruiz", "Mei Chen", "Tomás Novák"}
	seedTopics = []string{"Caching at the edge", "Why Redis", "Go generics in practice", "SQLite in production", "Invalidation is hard", "Counting likes", "Image proxies", "Graceful shutdown", "Tracing requests", "Load shedding"}
	seedEpoch  = time.Date(2024, 1, 1, 9, 0, 0, 0, time.UTC)
)

// migrate creates the tables, and seeds them when they are empty. It runs in one immediate
// transaction: of several instances starting on one file, the first seeds and the others
// find the rows. SQLite answers SQLITE_BUSY without waiting where waiting could deadlock (a
// new file's first connections switching it to WAL at once): migrate then tries again, until
// ctx ends.
func (s *store) migrate(ctx context.Context) (seeded bool, err error) {
	for {
		seeded, err = s.migrateOnce(ctx)
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return seeded, err
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *store) migrateOnce(ctx context.Context) (seeded bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	for _, stmt := range schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("schema: %w", err)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM articles)`).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, tx.Commit()
	}
	for i := range seedUsers {
		joined := seedEpoch.Add(-time.Duration(30*(seedUsers-i)) * 24 * time.Hour)
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, name, bio, created_at) VALUES (?, ?, ?, ?)`,
			i+1, seedNames[i], fmt.Sprintf("Writes about %s.", strings.ToLower(seedTopics[i])), joined.UnixMilli()); err != nil {
			return false, fmt.Errorf("seeding users: %w", err)
		}
	}
	for i := range seedArticles {
		id := i + 1
		created := seedEpoch.Add(time.Duration(i) * 6 * time.Hour).UnixMilli()
		title := fmt.Sprintf("%s, part %d", seedTopics[i%len(seedTopics)], i/len(seedTopics)+1)
		body := fmt.Sprintf("Article %d of the seed data: notes on %s.", id, strings.ToLower(seedTopics[i%len(seedTopics)]))
		if _, err := tx.ExecContext(ctx, `INSERT INTO articles (id, title, body, author_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
			id, title, body, i%seedUsers+1, created, created); err != nil {
			return false, fmt.Errorf("seeding articles: %w", err)
		}
		for j := range (id * 7) % 5 { // 0 to 4 likes
			if _, err := tx.ExecContext(ctx, `INSERT INTO likes (article_id, user_id, created_at) VALUES (?, ?, ?)`,
				id, (id+j)%seedUsers+1, created); err != nil {
				return false, fmt.Errorf("seeding likes: %w", err)
			}
		}
	}
	return true, tx.Commit()
}

const articleColumns = `id, title, body, author_id, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanArticle(row scanner) (Article, error) {
	var a Article
	var created, updated int64
	if err := row.Scan(&a.ID, &a.Title, &a.Body, &a.AuthorID, &created, &updated); err != nil {
		return Article{}, err
	}
	a.CreatedAt, a.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return a, nil
}

// pageIDs returns the IDs of one page of articles, newest first.
func (s *store) pageIDs(ctx context.Context, page, perPage int) ([]int64, error) {
	s.queries.Add(1)
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM articles ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
		perPage, (page-1)*perPage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make([]int64, 0, perPage)
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// articles returns the articles of ids that exist, in one statement.
func (s *store) articles(ctx context.Context, ids []int64) (map[int64]Article, error) {
	return queryByID(ctx, s, `SELECT `+articleColumns+` FROM articles WHERE id IN `, ids, scanArticle, func(a Article) int64 { return a.ID })
}

// users returns the users of ids that exist, in one statement.
func (s *store) users(ctx context.Context, ids []int64) (map[int64]User, error) {
	return queryByID(ctx, s, `SELECT id, name, bio, created_at FROM users WHERE id IN `, ids, scanUser, func(u User) int64 { return u.ID })
}

// queryByID runs query (ending in "IN ") on the distinct ids and returns the rows by ID.
func queryByID[T any](ctx context.Context, s *store, query string, ids []int64, scan func(scanner) (T, error), idOf func(T) int64) (map[int64]T, error) {
	out := make(map[int64]T, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, 0, len(ids))
	seen := make(map[int64]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			args = append(args, id)
		}
	}
	s.queries.Add(1)
	rows, err := s.db.QueryContext(ctx, query+"(?"+strings.Repeat(",?", len(args)-1)+")", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out[idOf(v)] = v
	}
	return out, rows.Err()
}

func (s *store) article(ctx context.Context, id int64) (Article, error) {
	s.queries.Add(1)
	a, err := scanArticle(s.db.QueryRowContext(ctx, `SELECT `+articleColumns+` FROM articles WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Article{}, errNotFound
	}
	return a, err
}

func (s *store) user(ctx context.Context, id int64) (User, error) {
	s.queries.Add(1)
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT id, name, bio, created_at FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, errNotFound
	}
	return u, err
}

func scanUser(row scanner) (User, error) {
	var u User
	var joined int64
	if err := row.Scan(&u.ID, &u.Name, &u.Bio, &joined); err != nil {
		return User{}, err
	}
	u.JoinedAt = time.UnixMilli(joined).UTC()
	return u, nil
}

// articleInput is the body of POST and PUT /api/articles: nil fields are left unchanged by PUT.
type articleInput struct {
	Title    *string `json:"title"`
	Body     *string `json:"body"`
	AuthorID *int64  `json:"author_id"`
}

func (s *store) createArticle(ctx context.Context, title, body string, authorID int64) (Article, error) {
	s.queries.Add(1)
	now := time.Now().UnixMilli()
	a, err := scanArticle(s.db.QueryRowContext(ctx,
		`INSERT INTO articles (title, body, author_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING `+articleColumns,
		title, body, authorID, now, now))
	if isForeignKeyError(err) {
		return Article{}, errBadAuthor
	}
	return a, err
}

func (s *store) updateArticle(ctx context.Context, id int64, title, body *string) (Article, error) {
	s.queries.Add(1)
	a, err := scanArticle(s.db.QueryRowContext(ctx,
		`UPDATE articles SET title = COALESCE(?, title), body = COALESCE(?, body), updated_at = ? WHERE id = ? RETURNING `+articleColumns,
		title, body, time.Now().UnixMilli(), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Article{}, errNotFound
	}
	return a, err
}

// addLike records a like of an article, by a user or anonymous (userID 0).
func (s *store) addLike(ctx context.Context, articleID, userID int64) error {
	s.queries.Add(1)
	var user any
	if userID != 0 {
		user = userID
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO likes (article_id, user_id, created_at) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM articles WHERE id = ?)`,
		articleID, user, time.Now().UnixMilli(), articleID)
	if isForeignKeyError(err) {
		return errBadUser
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errNotFound
	}
	return nil
}

func (s *store) likeCount(ctx context.Context, articleID int64) (int64, error) {
	s.queries.Add(1)
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM likes WHERE article_id = ?`, articleID).Scan(&n)
	return n, err
}

func isForeignKeyError(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
