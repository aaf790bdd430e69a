-- The subset of Harbor's schema (make/migrations/postgresql, as of Harbor 2.11 and
-- later) that blobgate reads: same table and column names, types and NOT NULLs.
-- artifact.artifact_type is NOT NULL since 2.11 (0140_2.11.0); a deleted project is
-- renamed <name>#<project_id> and flagged deleted, which frees its name.
CREATE TABLE IF NOT EXISTS project (
  project_id SERIAL PRIMARY KEY NOT NULL,
  owner_id int NOT NULL,
  name varchar(255) NOT NULL,
  creation_time timestamp default CURRENT_TIMESTAMP,
  update_time timestamp default CURRENT_TIMESTAMP,
  deleted boolean DEFAULT false NOT NULL,
  registry_id int,
  UNIQUE (name)
);
CREATE TABLE IF NOT EXISTS repository (
  repository_id SERIAL NOT NULL,
  name varchar(255) NOT NULL,
  project_id int NOT NULL,
  description text,
  pull_count int DEFAULT 0 NOT NULL,
  star_count int DEFAULT 0 NOT NULL,
  creation_time timestamp default CURRENT_TIMESTAMP,
  update_time timestamp default CURRENT_TIMESTAMP,
  primary key (repository_id),
  UNIQUE (name)
);
CREATE TABLE IF NOT EXISTS blob (
  id SERIAL PRIMARY KEY NOT NULL,
  digest varchar(255) NOT NULL,
  content_type varchar(1024) NOT NULL,
  size bigint NOT NULL,
  creation_time timestamp default CURRENT_TIMESTAMP,
  update_time timestamp default CURRENT_TIMESTAMP,
  status varchar(255) default 'none',
  version bigint default 0,
  UNIQUE (digest)
);
CREATE TABLE IF NOT EXISTS project_blob (
  id SERIAL PRIMARY KEY NOT NULL,
  project_id int NOT NULL,
  blob_id int NOT NULL,
  creation_time timestamp default CURRENT_TIMESTAMP,
  CONSTRAINT unique_project_blob UNIQUE (project_id, blob_id)
);
CREATE TABLE IF NOT EXISTS artifact (
  id SERIAL PRIMARY KEY NOT NULL,
  type varchar(255) NOT NULL,
  media_type varchar(255) NOT NULL,
  manifest_media_type varchar(255) NOT NULL,
  project_id int NOT NULL,
  repository_id int NOT NULL,
  repository_name varchar(255) NOT NULL,
  digest varchar(255) NOT NULL,
  size bigint,
  push_time timestamp default CURRENT_TIMESTAMP,
  pull_time timestamp,
  extra_attrs text,
  annotations jsonb,
  icon varchar(255),
  artifact_type varchar(255) NOT NULL,
  CONSTRAINT unique_artifact UNIQUE (repository_id, digest)
);
CREATE TABLE IF NOT EXISTS artifact_blob (
  id SERIAL PRIMARY KEY NOT NULL,
  digest_af varchar(255) NOT NULL,
  digest_blob varchar(255) NOT NULL,
  creation_time timestamp default CURRENT_TIMESTAMP,
  CONSTRAINT unique_artifact_blob UNIQUE (digest_af, digest_blob)
);
