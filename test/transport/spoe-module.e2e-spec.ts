// SpoeModule: what an app gets by importing it.
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpoeModule, SpoeServer } from 'nestjs-spoe';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';

async function appOf(module: Parameters<typeof NestFactory.create>[0]) {
  return NestFactory.createApplicationContext(module, { logger: false });
}

describe('SpoeModule', () => {
  it('forRoot provides the SpoeServer and, terminus being installed, its health indicator', async () => {
    @Module({ imports: [SpoeModule.forRoot({ host: '127.0.0.1', port: 0 })] })
    class AppModule {}
    const app = await appOf(AppModule);
    try {
      expect(app.get(SpoeServer)).toBeInstanceOf(SpoeServer);
      expect(app.get(SpoeHealthIndicator)).toBeInstanceOf(SpoeHealthIndicator);
    } finally {
      await app.close();
    }
  });

  it('health: false leaves the health indicator out', async () => {
    @Module({ imports: [SpoeModule.forRoot({ host: '127.0.0.1', port: 0, health: false })] })
    class AppModule {}
    const app = await appOf(AppModule);
    try {
      expect(() => app.get(SpoeHealthIndicator)).toThrow();
    } finally {
      await app.close();
    }
  });

  it('a bare import provides no server (there are no options to build one with)', async () => {
    @Module({ imports: [SpoeModule] })
    class AppModule {}
    const app = await appOf(AppModule);
    try {
      expect(() => app.get(SpoeServer)).toThrow();
    } finally {
      await app.close();
    }
  });
});
